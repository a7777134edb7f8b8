"""Validate CEF lines with cefevent (PyPI) in strict mode.

stdin: a JSON array of CEF lines. Each line is parsed here per the ArcSight
CEF spec (header split on unescaped '|' with '\\|' and '\\\\' escapes;
extension 'key=value' pairs split on unescaped '=' and the space before the
key, with '\\=', '\\\\', '\\n', '\\r' escapes; any other escape is an error),
then every header field and extension is fed to cefevent's
CEFEvent(strict=True), which raises on unknown keys, values of the wrong type
and over-long values.
stdout: JSON {"parsed": [{"header": [...], "extensions": [[k, v], ...]}]}.
Exit 0 when all pass, 1 on a failure, 3 when cefevent is missing.
"""
import json
import re
import sys

try:
    from cefevent import CEFEvent
except ImportError as e:  # pragma: no cover
    print(f"cefevent missing ({e}): pip install -r tests/validators/requirements.txt", file=sys.stderr)
    sys.exit(3)

KEY = re.compile(r"^[A-Za-z0-9_]+$")
HEADER_NAMES = ["deviceVendor", "deviceProduct", "deviceVersion", "signatureId", "name", "severity"]
EXT_ESCAPES = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


def parse_header(line):
    assert line.startswith("CEF:0|"), "must start with CEF:0|"
    assert "\n" not in line and "\r" not in line, "raw line break in the line"
    fields, cur, i = [], [], len("CEF:0|")
    while len(fields) < 6:
        assert i < len(line), "header ends early"
        c = line[i]
        if c == "\\":
            nxt = line[i + 1] if i + 1 < len(line) else ""
            assert nxt in ("\\", "|"), f"bad header escape \\{nxt}"
            cur.append(nxt)
            i += 2
        elif c == "|":
            fields.append("".join(cur))
            cur = []
            i += 1
        else:
            cur.append(c)
            i += 1
    return fields, line[i:]


def parse_extensions(ext):
    pairs, cur, key, i = [], [], None, 0
    # cur holds (char, escaped) so unescaped spaces can be found later.
    while i < len(ext):
        c = ext[i]
        if c == "\\":
            nxt = ext[i + 1] if i + 1 < len(ext) else ""
            assert nxt in EXT_ESCAPES, f"bad extension escape \\{nxt}"
            cur.append((EXT_ESCAPES[nxt], True))
            i += 2
            continue
        if c == "=":
            spaces = [j for j, (ch, esc) in enumerate(cur) if ch == " " and not esc]
            start = spaces[-1] + 1 if spaces else 0
            name = "".join(ch for ch, _ in cur[start:])
            assert KEY.match(name), f"bad key {name!r}"
            if key is None:
                assert start == 0, "text before the first key"
            else:
                assert start > 0, f"no space before key {name!r}"
                pairs.append((key, "".join(ch for ch, _ in cur[: start - 1])))
            key, cur = name, []
        else:
            cur.append((c, False))
        i += 1
    if key is not None:
        pairs.append((key, "".join(ch for ch, _ in cur)))
    else:
        assert not cur, "extension text without a key"
    return pairs


def check(line):
    header, ext = parse_header(line)
    pairs = parse_extensions(ext)
    ev = CEFEvent(strict=True)
    for name, value in zip(HEADER_NAMES, header):
        if name == "severity":
            assert value.isdigit(), f"severity {value!r} is not a number"
            value = int(value)
        ev.set_field(name, value)
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys {keys}"
    assert "rt" in keys and "externalId" in keys, "rt and externalId are required"
    for key, value in pairs:
        meta = ev.get_field_metadata(key)
        assert meta is not None, f"unknown CEF key {key!r}"
        types = meta["data_type"]
        if "Integer" in types or "Long" in types:
            value = int(value)
        elif "Floating Point" in types:
            value = float(value)
        # By full name: cefevent's short-name path treats a valid 0 as invalid.
        ev.set_field(meta["full_name"], value)
    return {"header": header, "extensions": [list(p) for p in pairs]}


def main():
    lines = json.load(sys.stdin)
    parsed, failures = [], 0
    for i, line in enumerate(lines):
        try:
            parsed.append(check(line))
        except Exception as e:
            failures += 1
            parsed.append(None)
            print(f"line {i}: {type(e).__name__}: {e}\n  {line[:300]!r}", file=sys.stderr)
    print(json.dumps({"parsed": parsed}))
    print(f"cefevent: {len(lines) - failures} valid, {failures} invalid", file=sys.stderr)
    sys.exit(1 if failures else 0)


main()
