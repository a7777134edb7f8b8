#!/usr/bin/env python3
"""A real SMTP server for tests/email.rs (aiosmtpd, PyPI), on 127.0.0.1.

    smtp_server.py MODE PORT OUT_DIR CERT KEY [USER PASSWORD]

MODE is `starttls` (STARTTLS offered and required before MAIL),
`smtps` (TLS from the first byte) or `plain` (no TLS offered). With USER and
PASSWORD, AUTH PLAIN/LOGIN is required (and accepted only over TLS).

Each accepted message is saved as OUT_DIR/<n>.eml (the bytes received) and
parsed with Python's `email` package into OUT_DIR/<n>.json: the envelope,
whether the session was encrypted, the login used, the decoded headers and
every MIME part (content type, charset, decoded text).

Scripted answers: a message whose Subject contains `answer-4xx-once` is
answered `451 4.3.0` the first time its Message-ID is seen (then accepted);
one whose Subject contains `answer-5xx` is answered `550 5.7.1` always.
Refused messages are counted in OUT_DIR/refused-<n>.json.

Prints `ready` on stdout once listening.
"""

import asyncio
import email
import email.policy
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

MODE, PORT, OUT, CERT, KEY = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
LOGIN = (sys.argv[6], sys.argv[7]) if len(sys.argv) > 7 else None


class Handler:
    def __init__(self):
        self.n = 0
        self.refused = 0
        self.seen = set()

    def _save(self, name, value):
        path = os.path.join(OUT, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(value, f)
        os.replace(path + ".tmp", path)

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        subject = str(msg["Subject"] or "")
        message_id = str(msg["Message-ID"] or "")
        if "answer-5xx" in subject or ("answer-4xx-once" in subject and message_id not in self.seen):
            self.seen.add(message_id)
            self.refused += 1
            code = "550 5.7.1 Refused by policy" if "answer-5xx" in subject else "451 4.3.0 Try again later"
            self._save(f"refused-{self.refused}.json", {"message_id": message_id, "answer": code})
            return code
        self.n += 1
        with open(os.path.join(OUT, f"{self.n}.eml"), "wb") as f:
            f.write(envelope.original_content)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append({
                "content_type": part.get_content_type(),
                "charset": part.get_content_charset(),
                "content": part.get_content(),
            })
        self._save(f"{self.n}.json", {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            # STARTTLS sets session.ssl; implicit TLS shows on the transport.
            "encrypted": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "login": getattr(session, "auth_data", None),
            "headers": {k: str(v) for k, v in msg.items()},
            "header_names": [k for k, _ in msg.items()],
            "content_type": msg.get_content_type(),
            "parts": parts,
        })
        return "250 2.0.0 Message accepted"


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    ok = (auth_data.login.decode(), auth_data.password.decode()) == LOGIN
    # auth_data becomes session.auth_data: recorded with each message.
    return AuthResult(success=ok, auth_data=auth_data.login.decode() if ok else None)


def main():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT, KEY)
    kwargs = dict(hostname="127.0.0.1", port=PORT)
    if LOGIN:
        kwargs.update(authenticator=authenticator, auth_require_tls=MODE != "plain",
                      auth_required=True)
    if MODE == "starttls":
        kwargs.update(tls_context=context, require_starttls=True)
    elif MODE == "smtps":
        kwargs.update(ssl_context=context)
    controller = Controller(Handler(), **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()  # until the test closes stdin or kills us
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
