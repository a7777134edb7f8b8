#!/usr/bin/env python3
"""Verifies a relay signature with independent implementations.

usage: verify_signature.py sha256|standard SECRET HEADERS_JSON BODY_FILE [SIG_HEADER]
Exit 0 when the signature verifies, 1 otherwise (with the reason on stderr).
"""
import hashlib
import hmac
import json
import sys

profile, secret, headers_json, body_file = sys.argv[1:5]
sig_header = sys.argv[5] if len(sys.argv) > 5 else None
headers = {k.lower(): v for k, v in json.loads(headers_json).items()}
body = open(body_file, "rb").read()

if profile == "sha256":
    name = (sig_header or "x-webhook-signature").lower()
    given = headers[name]
    assert given.startswith("sha256="), given
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.split("=", 1)[1]):
        sys.exit("sha256 signature does not verify")
elif profile == "standard":
    try:
        from standardwebhooks.webhooks import Webhook
    except ImportError:
        sys.exit("the standardwebhooks package is missing: run bash .ci/install-test-deps")
    # Raises WebhookVerificationError when it does not verify (also checks the timestamp window).
    Webhook(secret).verify(body, headers)
else:
    sys.exit(f"unknown profile {profile}")
print("ok")
