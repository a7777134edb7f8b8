"""Validate Slack messages with slack_sdk's Block Kit models.

stdin: a JSON array of messages ({"text": ..., "blocks": [...]}).
Every block must parse (Block.parse(d) is not None), pass validate_json()
and serialise back (to_dict(), which validates nested elements) to the
same dict. Limits slack_sdk does not check (50 blocks, 2000 chars per
section field, a non-empty top-level text) are checked here.
Exit 0 when all pass, 1 on a failure, 3 when slack_sdk is missing.
"""
import json
import sys

try:
    from slack_sdk.models.blocks import Block
except ImportError as e:  # pragma: no cover
    print(f"slack_sdk missing ({e}): pip install -r tests/validators/requirements.txt", file=sys.stderr)
    sys.exit(3)


def check(msg):
    text = msg.get("text")
    assert isinstance(text, str) and text.strip(), "top-level text fallback missing"
    blocks = msg.get("blocks")
    assert isinstance(blocks, list) and 0 < len(blocks) <= 50, "1..50 blocks"
    for d in blocks:
        b = Block.parse(d)
        assert b is not None, f"slack_sdk does not know block {d.get('type')!r}"
        b.validate_json()
        back = b.to_dict()
        assert back == d, f"block changed on round trip:\n{d}\n{back}"
        for f in d.get("fields") or []:
            assert len(f["text"]) <= 2000, f"field over 2000 chars: {len(f['text'])}"


def main():
    messages = json.load(sys.stdin)
    failures = 0
    for i, msg in enumerate(messages):
        try:
            check(msg)
        except Exception as e:  # report every failing message
            failures += 1
            print(f"message {i}: {type(e).__name__}: {e}")
    print(f"slack_sdk: {len(messages) - failures} valid, {failures} invalid")
    sys.exit(1 if failures else 0)


main()
