#!/usr/bin/env python3
"""Validates an OpenAPI 3.0 document: scripts/validate-openapi.py [--schema SCHEMA.json] DOC.yaml

Checks, in order, and prints every problem found (exit 1) or "DOC: valid OpenAPI 3.0.x" (exit 0):
  1. YAML: parses; no key repeated in a mapping (PyYAML would keep the last silently); no null value
     anywhere. An OpenAPI document has no use for null here, and a null is what an unquoted comma inside a
     flow mapping leaves behind: `{description: a, b}` is {description: "a", "b": null}.
  2. The OpenAPI Initiative's JSON schema for 3.0 (Debian's openapi-specification package ships it at
     /usr/share/openapi-specification/schemas/v3.0/schema.json), with python3-jsonschema (draft 4).
  3. What that schema cannot say (OpenAPI 3.0.3 §4.7.8, §4.7.12, §4.7.10): every local $ref resolves, only
     local refs are used, every {param} of a path template is declared `in: path` for each of its
     operations and every declared path parameter appears in the template, operationIds are unique, no two
     paths differ only in their parameters' names, and `servers` says where the API is served.

`--to-json OUT` writes the document as JSON instead (no checks), for tests that read it from C++.
"""
import argparse
import json
import re
import sys

import yaml

DEFAULT_SCHEMA = "/usr/share/openapi-specification/schemas/v3.0/schema.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key repeated within one mapping."""


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}",
                key_node.start_mark)
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def pointer(path):
    return "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in path)


def find_nulls(value, path, problems):
    if value is None:
        problems.append(f"{pointer(path)}: null (an unquoted comma in a flow mapping? quote the string)")
    elif isinstance(value, dict):
        for key, item in value.items():
            find_nulls(item, path + [key], problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            find_nulls(item, path + [index], problems)


def schema_problems(document, schema_path):
    import jsonschema
    try:
        with open(schema_path) as f:
            schema = json.load(f)
    except OSError as error:
        return [f"cannot read the OpenAPI 3.0 JSON schema: {error} (install Debian's openapi-specification: "
                "scripts/install-deps.sh)"]
    validator = jsonschema.Draft4Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path))):
        # The schema's oneOf/anyOf errors are vague; the deepest context names the offending key.
        best = jsonschema.exceptions.best_match([error])
        problems.append(f"{pointer(list(best.absolute_path))}: {best.message}")
    return problems


def walk_refs(value, path, out):
    if isinstance(value, dict):
        if isinstance(value.get("$ref"), str):
            out.append((path, value["$ref"]))
        for key, item in value.items():
            walk_refs(item, path + [key], out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            walk_refs(item, path + [index], out)


def resolve(document, ref):
    node = document
    for raw in ref[2:].split("/") if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def semantic_problems(document):
    problems = []
    refs = []
    walk_refs(document, [], refs)
    for path, ref in refs:
        if not ref.startswith("#"):
            problems.append(f"{pointer(path)}: $ref {ref!r} is not local (this document must stand alone)")
        elif resolve(document, ref) is None:
            problems.append(f"{pointer(path)}: $ref {ref!r} resolves to nothing")

    def parameters(items):
        out = {}
        for item in items or []:
            if isinstance(item, dict) and "$ref" in item:
                item = resolve(document, item["$ref"]) or {}
            if isinstance(item, dict):
                out[(item.get("name"), item.get("in"))] = item
        return out

    operation_ids = {}
    shapes = {}
    for template, item in (document.get("paths") or {}).items():
        names = re.findall(r"\{([^}]*)\}", template)
        shape = re.sub(r"\{[^}]*\}", "{}", template)
        if shape in shapes:
            problems.append(f"paths: {template!r} and {shapes[shape]!r} are the same path (OpenAPI §4.7.8)")
        shapes[shape] = template
        if not isinstance(item, dict):
            continue
        shared = parameters(item.get("parameters"))
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            where = f"{method.upper()} {template}"
            declared = {**shared, **parameters(operation.get("parameters"))}
            in_path = {name for name, location in declared if location == "path"}
            for name in names:
                if name not in in_path:
                    problems.append(f"{where}: path parameter {{{name}}} is not declared `in: path`")
            for name in sorted(in_path - set(names)):
                problems.append(f"{where}: parameter {name!r} is `in: path` but not in the path template")
            operation_id = operation.get("operationId")
            if operation_id is not None:
                if operation_id in operation_ids:
                    problems.append(f"{where}: operationId {operation_id!r} is also {operation_ids[operation_id]}")
                operation_ids[operation_id] = where
    if not document.get("servers"):
        problems.append("servers: missing (say where the API is served)")
    return problems


def validate(text, schema_path):
    try:
        document = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as error:
        return [f"YAML: {error}"]
    if not isinstance(document, dict):
        return ["the document is not a mapping"]
    if not re.fullmatch(r"3\.0\.\d+", str(document.get("openapi", ""))):
        return [f"openapi: {document.get('openapi')!r} is not 3.0.x (the schema this checks against)"]
    problems = []
    find_nulls(document, [], problems)
    problems += schema_problems(document, schema_path)
    problems += semantic_problems(document)
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("document")
    parser.add_argument("--schema", default=DEFAULT_SCHEMA, help="the OpenAPI 3.0 JSON schema")
    parser.add_argument("--to-json", metavar="OUT", help="write the document as JSON to OUT; no checks")
    args = parser.parse_args()
    with open(args.document) as f:
        text = f.read()
    if args.to_json:
        with open(args.to_json, "w") as out:
            json.dump(yaml.load(text, Loader=StrictLoader), out, indent=1)
            out.write("\n")
        return 0
    problems = validate(text, args.schema)
    for problem in problems:
        print(f"{args.document}: {problem}", file=sys.stderr)
    if problems:
        print(f"{args.document}: {len(problems)} problem(s); not valid OpenAPI 3.0", file=sys.stderr)
        return 1
    print(f"{args.document}: valid OpenAPI 3.0.x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
