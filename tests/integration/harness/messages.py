"""Test messages: RFC 5322, CRLF line endings, unique Message-ID tokens, and lines that
exercise SMTP/POP3 dot-stuffing."""

import base64
import hashlib
import itertools
import os
import time

_seq = itertools.count(1)


def token(prefix="msg"):
    return f"{prefix}-{os.getpid()}-{next(_seq)}-{int(time.time() * 1000)}"


def make_message(tok=None, subject="mailedge integration test", body=None,
                 to="test@example.test", sender="sender@example.test"):
    """Return (token, bytes). Headers are complete (From/To/Date/Message-ID) so Postfix
    adds nothing inside the message."""
    tok = tok or token()
    if body is None:
        body = (b"Hello through mailedge.\r\n"
                b".a line that starts with a dot (stuffed on the wire)\r\n"
                b"..two dots\r\n"
                b"\r\n"
                b"tabs\tand trailing spaces   \r\n"
                b"last line\r\n")
    head = (f"From: Sender <{sender}>\r\n"
            f"To: <{to}>\r\n"
            f"Subject: {subject} {tok}\r\n"
            f"Date: Sun, 22 Nov 2026 15:00:00 +0000\r\n"
            f"Message-ID: <{tok}@example.test>\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n"
            f"\r\n").encode()
    return tok, head + body


def big_body(size):
    """About `size` bytes of deterministic base64-looking text in 76-char CRLF lines,
    with a dot-leading line every so often."""
    seed = hashlib.sha256(b"mailedge").digest()
    lines = []
    total = 0
    i = 0
    while total < size:
        seed = hashlib.sha256(seed).digest()
        raw = (seed * 2)[:57]
        line = base64.b64encode(raw)  # 76 chars
        if i % 1000 == 0:
            line = b"." + line[1:]
        lines.append(line + b"\r\n")
        total += 78
        i += 1
    return b"".join(lines)


def make_big_message(size, tok=None):
    return make_message(tok=tok, subject="big message", body=big_body(size))
