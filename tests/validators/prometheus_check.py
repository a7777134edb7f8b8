#!/usr/bin/env python3
"""Parses a Prometheus text exposition (stdin) with the reference parser
(`prometheus_client.parser`, PyPI) and prints the samples as JSON:
{"families": {name: type}, "samples": [[name, {labels}, value], ...]}.
Exit 1 when the text does not parse, 3 when the package is missing.
"""
import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # pragma: no cover
    print(f"missing package: {e}; run tests/validators/install.sh", file=sys.stderr)
    sys.exit(3)


def main():
    text = sys.stdin.read()
    families = {}
    samples = []
    try:
        for fam in text_string_to_metric_families(text):
            if fam.name in families:
                raise ValueError(f"family {fam.name} appears twice")
            families[fam.name] = fam.type
            for s in fam.samples:
                samples.append([s.name, s.labels, s.value])
    except Exception as e:  # the parser raises ValueError and friends
        print(f"not valid Prometheus text: {e}", file=sys.stderr)
        sys.exit(1)
    untyped = [n for n, t in families.items() if t in ("unknown", "untyped")]
    if untyped:
        print(f"families without a TYPE: {untyped}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"families": families, "samples": samples}))


if __name__ == "__main__":
    main()
