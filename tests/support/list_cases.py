#!/usr/bin/env python3
"""Prints the test cases of a unittest module, one `Class.test_method` per line, as `python -m unittest`
would run them (the loader's own view, so inherited and mixed-in cases count too).

Usage: list_cases.py DIR MODULE   (DIR is put first on sys.path, as the working directory is for ctest)
Run by tests/CMakeLists.txt at configure time: each printed case becomes one CTest test.
"""
import os
import sys
import unittest


def cases(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from cases(item)
        else:
            yield item


def main():
    directory, module = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.abspath(directory))
    os.chdir(directory)
    suite = unittest.defaultTestLoader.loadTestsFromName(module)
    names = []
    for case in cases(suite):
        # A module that fails to import shows up as a _FailedTest: that is an error, not an empty suite.
        if type(case).__name__ in ("_FailedTest", "ModuleImportFailure"):
            print(f"list_cases: cannot load {module}: {case._exception}", file=sys.stderr)
            return 1
        test_id = case.id()
        if not test_id.startswith(module + "."):
            print(f"list_cases: unexpected test id {test_id}", file=sys.stderr)
            return 1
        names.append(test_id[len(module) + 1:])
    if not names:
        print(f"list_cases: {module} has no test cases", file=sys.stderr)
        return 1
    print("\n".join(sorted(set(names))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
