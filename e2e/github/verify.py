#!/usr/bin/env python3
"""Check the vendored GitHub schemas and examples.

Every schema in openapi.json must be a valid draft 2020-12 schema, and every
file in examples/ must validate against the schema of its operation and status
(`<op>-<status>.json` -> operations[op].responses[status],
`<op>-request.json` -> operations[op].request), with format assertions on.

Needs the `jsonschema` package (with its format extras); vendor.sh installs it
in a throwaway virtualenv. Usage: verify.py DIR   (DIR = e2e/github)
"""

import importlib.metadata
import json
import os
import re
import sys

from jsonschema import Draft202012Validator


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(root, "openapi.json"), encoding="utf-8") as f:
        doc = json.load(f)
    ops = {op_id.replace("/", "-"): (op_id, op) for op_id, op in doc["operations"].items()}

    failures = 0
    checked = 0
    for op_id, op in doc["operations"].items():
        schemas = dict(op["responses"])
        if "request" in op:
            schemas["request"] = op["request"]
        for p in op["parameters"].values():
            if "schema" in p:
                schemas["param"] = p["schema"]
                Draft202012Validator.check_schema(p["schema"])
        for name, schema in schemas.items():
            Draft202012Validator.check_schema(schema)
            if "$ref" in json.dumps(schema):
                print("FAIL %s %s: schema still has a $ref" % (op_id, name))
                failures += 1

    ex_dir = os.path.join(root, "examples")
    names = sorted(n for n in os.listdir(ex_dir) if n.endswith(".json"))
    covered = set()
    for name in names:
        m = re.fullmatch(r"(.+)-(request|\d{3})\.json", name)
        if not m or m.group(1) not in ops:
            print("FAIL %s: not <operation>-<status|request>.json" % name)
            failures += 1
            continue
        op_id, op = ops[m.group(1)]
        key = m.group(2)
        schema = op.get("request") if key == "request" else op["responses"].get(key)
        if schema is None:
            print("FAIL %s: %s has no schema for %s" % (name, op_id, key))
            failures += 1
            continue
        covered.add((op_id, key))
        with open(os.path.join(ex_dir, name), encoding="utf-8") as f:
            example = json.load(f)
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(example), key=lambda e: list(e.absolute_path))
        checked += 1
        for e in errors:
            where = "/" + "/".join(str(p) for p in e.absolute_path)
            print("FAIL %s %s: %s" % (name, where, e.message[:300]))
            failures += 1

    for op_id, op in doc["operations"].items():
        wanted = set(op["responses"]) | ({"request"} if "request" in op else set())
        for key in sorted(wanted):
            if (op_id, key) not in covered:
                print("FAIL %s %s: no example" % (op_id, key))
                failures += 1

    print("verify.py: jsonschema %s, %d examples checked, %d failures"
          % (importlib.metadata.version("jsonschema"), checked, failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
