"""Validate CEF lines with cefevent (PyPI) in strict mode.

stdin: a JSON array of CEF lines. Each line is parsed here per the ArcSight
CEF spec (header split on unescaped '|' with '\\|' and '\\\\' escapes;
extension 'key=value' pairs split on unescaped '=' and the space before the
key, with '\\=', '\\\\', '\\n', '\\r' escapes; any other escape is an error),
then every header field and extension is fed to cefevent's
CEFEvent(strict=True), which raises on unknown keys, values of the wrong type
and over-long extension values.

cefevent 0.5.6 checks neither the header fields' lengths nor the values of
TimeStamp keys (it accepts a 2,000-character Signature ID and `rt=yesterday`),
so this script checks both itself, per the CEF spec's extension dictionary:
Device Vendor and Device Product at most 63 characters, Device Version 31,
Signature ID (deviceEventClassId) 1023, Name 512; a TimeStamp key (`rt`,
`start`, `end`, `art`, `deviceCustomDate1`, ... : every key cefevent types as
TimeStamp, plus `art`) holds milliseconds since the epoch or one of the spec's
date formats `MMM dd [yyyy] HH:mm:ss[.SSS][ zzz]`.
stdout: JSON {"parsed": [{"header": [...], "extensions": [[k, v], ...]}]}.
Exit 0 when all pass, 1 on a failure, 3 when cefevent is missing.
"""
import datetime
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
# Characters, per the spec's dictionary (deviceVendor, deviceProduct,
# deviceVersion, deviceEventClassId, name); severity is checked as a number.
HEADER_MAX = {"deviceVendor": 63, "deviceProduct": 63, "deviceVersion": 31, "signatureId": 1023, "name": 512}
# TimeStamp keys cefevent does not know (it refuses them as unknown anyway).
EXTRA_TIMESTAMP_KEYS = {"art"}
MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
# MMM dd [yyyy] HH:mm:ss[.SSS][ zzz]; zzz a zone name or offset (PST, UTC, GMT+01:00, +0100).
DATE = re.compile(
    rf"^(?P<mon>{MONTHS}) (?P<day>\d{{2}})(?: (?P<year>\d{{4}}))? (?P<time>\d{{2}}:\d{{2}}:\d{{2}})"
    r"(?:\.\d{3})?(?: (?:[A-Za-z]{1,5}(?:[+-]\d{2}:?\d{2})?|[+-]\d{2}:?\d{2}))?$"
)


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


def check_timestamp(key, value):
    """Milliseconds since the epoch, or one of the spec's date formats."""
    if re.fullmatch(r"\d{1,15}", value):
        return
    m = DATE.match(value)
    assert m, f"{key}={value!r} is neither epoch milliseconds nor MMM dd [yyyy] HH:mm:ss[.SSS][ zzz]"
    # Real calendar values (no Feb 31, no 25:00:00); 2000 is a leap year.
    try:
        datetime.datetime.strptime(f"{m['mon']} {m['day']} {m['year'] or '2000'} {m['time']}", "%b %d %Y %H:%M:%S")
    except ValueError as e:
        raise AssertionError(f"{key}={value!r}: {e}") from None


def check(line):
    header, ext = parse_header(line)
    pairs = parse_extensions(ext)
    ev = CEFEvent(strict=True)
    for name, value in zip(HEADER_NAMES, header):
        if name in HEADER_MAX:
            assert len(value) <= HEADER_MAX[name], f"{name} is {len(value)} characters, over the spec's {HEADER_MAX[name]}"
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
        if "TimeStamp" in types or key in EXTRA_TIMESTAMP_KEYS:
            check_timestamp(key, value)
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
