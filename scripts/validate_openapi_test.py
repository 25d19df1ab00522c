"""scripts/validate-openapi.py refuses what a real OpenAPI validator refuses (ctest openapi.validator_self_test)."""
import importlib.util
import os
import unittest

_spec = importlib.util.spec_from_file_location(
    "validate_openapi", os.path.join(os.path.dirname(os.path.abspath(__file__)), "validate-openapi.py"))
validate_openapi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(validate_openapi)

GOOD = """\
openapi: 3.0.3
info: {title: T, version: "1"}
servers: [{url: http://localhost}]
paths:
  /v1/vms/{id}/stop:
    parameters: [{$ref: "#/components/parameters/Id"}]
    post: {summary: "Stop, then kill", responses: {"200": {description: VM}}}
components:
  parameters:
    Id: {name: id, in: path, required: true, schema: {type: string}, description: "id, or name"}
"""


def problems(text):
    return validate_openapi.validate(text, validate_openapi.DEFAULT_SCHEMA)


class ValidatorTest(unittest.TestCase):
    def assertRefused(self, text, *fragments):
        found = problems(text)
        self.assertTrue(found, "accepted")
        for fragment in fragments:
            self.assertTrue(any(fragment in p for p in found), f"{fragment!r} not in {found}")

    def test_a_valid_document_passes(self):
        self.assertEqual(problems(GOOD), [])

    def test_unquoted_comma_in_a_flow_mapping_is_refused(self):
        # The bug the document had: `then kill` became a key of the operation.
        self.assertRefused(GOOD.replace('"Stop, then kill"', "Stop, then kill"),
                           "/paths/~1v1~1vms~1{id}~1stop/post/then kill: null",
                           "'then kill' does not match any of the regexes")
        # Where the schema allows any key (a parameter's extra keys are caught by oneOf, a schema's
        # properties by nothing), the null check still catches it.
        self.assertRefused(GOOD.replace('"id, or name"', "id, or name"), "/components/parameters/Id/or name: null")

    def test_missing_servers_is_refused(self):
        self.assertRefused(GOOD.replace("servers: [{url: http://localhost}]\n", ""), "servers: missing")

    def test_a_dangling_ref_is_refused(self):
        self.assertRefused(GOOD.replace("parameters/Id\"}]", "parameters/Nope\"}]"), "resolves to nothing")

    def test_an_undeclared_path_parameter_is_refused(self):
        self.assertRefused(GOOD.replace("/v1/vms/{id}/stop:", "/v1/vms/{id}/{other}/stop:"),
                           "path parameter {other} is not declared")

    def test_a_repeated_key_is_refused(self):
        self.assertRefused(GOOD.replace("info: {title: T,", "info: {title: T, title: U,"), "duplicate key 'title'")

    def test_a_schema_violation_is_refused(self):
        self.assertRefused(GOOD.replace('{"200": {description: VM}}', '{"200": {summary: VM}}'), "/paths")

    def test_only_openapi_3_0_is_accepted(self):
        self.assertRefused(GOOD.replace("openapi: 3.0.3", "openapi: 3.1.0"), "is not 3.0.x")


if __name__ == "__main__":
    unittest.main()
