#!/usr/bin/env python3
"""Checks relay's OpenAPI document with the reference validator, and real
responses against the schemas it documents.

stdin: {"spec": <the document>, "samples": [{"method", "path", "status", "body"}]}
  - the document must pass openapi-spec-validator (OpenAPI 3.1);
  - every sample must match a documented operation and status, and its
    JSON body must validate against the documented response schema
    (jsonschema, draft 2020-12, formats checked).
Exit 0 when all pass, 1 on a failure (reasons on stderr), 3 when a package
is missing.
"""
import json
import re
import sys

try:
    from openapi_spec_validator import validate
    from jsonschema import Draft202012Validator
except ImportError as e:  # pragma: no cover
    print(f"missing package: {e}; run tests/validators/install.sh", file=sys.stderr)
    sys.exit(3)


def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            node = node[part]
    return node


def find_operation(spec, method, path):
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    return None, None


def main():
    data = json.load(sys.stdin)
    spec = data["spec"]
    validate(spec)
    failures = []
    for s in data.get("samples", []):
        where = f'{s["method"]} {s["path"]} -> {s["status"]}'
        path, _, query = s["path"].partition("?")
        template, op = find_operation(spec, s["method"], path)
        if op is None:
            failures.append(f"{where}: no documented operation")
            continue
        documented = {p["name"] for p in (resolve(spec, p) for p in op.get("parameters", [])) if p["in"] == "query"}
        for pair in filter(None, query.split("&")):
            name = pair.split("=", 1)[0]
            if name not in documented and s["status"] < 400:
                failures.append(f"{where}: query parameter {name} is not documented")
        response = op["responses"].get(str(s["status"]))
        if response is None:
            failures.append(f"{where}: status not documented for {s['method']} {template}")
            continue
        response = resolve(spec, response)
        content = response.get("content", {})
        if "application/json" not in content:
            if s.get("body") not in (None, ""):
                if not content:
                    failures.append(f"{where}: a body was sent but none is documented")
            continue
        schema = dict(content["application/json"]["schema"])
        schema["components"] = spec["components"]
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(s["body"]), key=lambda e: list(e.path))
        for e in errors[:5]:
            failures.append(f"{where}: {'/'.join(map(str, e.path))}: {e.message}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"openapi: document valid; {len(data.get('samples', []))} responses match it")


if __name__ == "__main__":
    main()
