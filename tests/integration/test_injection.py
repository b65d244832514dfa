"""STARTTLS command injection (the CVE-2011-0411 class): a client, or a man in the middle
before TLS, pipelines commands behind STARTTLS/STLS in plaintext, hoping the server
executes them inside the TLS session that follows. mailedge must discard every byte sent
after the STARTTLS line before the handshake (and log it), so that:

  (a) no reply to an injected command ever arrives, in plaintext or inside TLS;
  (b) the backend never receives the injected bytes (byte-level, recording backend);
  (c) the discarded bytes are logged ("discarded N bytes sent by ... after STARTTLS").

Injected in the same TCP segment as the STARTTLS line, and in separate segments sent
before the ready reply was read (then the bytes may instead hit the TLS handshake and
break it: the test accepts a failed handshake but still requires (a) and (b)). The same
one-segment injection is also sent through to the real Postfix and Dovecot, whose
answers after TLS show a fresh session."""

import re
import ssl
import time

import pytest

from harness.clients import LineClient

pytestmark = pytest.mark.mailedge

H = "edge.example.test"
DISCARD_LINE = (r"discarded {n} bytes sent by unknown\[127\.0\.0\.1\]:{port} after "
                r"STARTTLS")
ANY_DISCARD_LINE = (r"discarded (\d+) bytes sent by unknown\[127\.0\.0\.1\]:{port} after "
                    r"STARTTLS")
CLOSE_LINE = r"disconnect from unknown\[127\.0\.0\.1\]:{port}\b.*reason=\S+ tls={tls}\b"
QUIET = 0.2  # how long we listen for replies that must not come (bounded, not asserted)

PROTO = {
    "smtp": dict(starttls=b"STARTTLS\r\n", ready=b"220 2.0.0 Ready to start TLS\r\n",
                 after=[(b"NOOP\r\n", b"250 2.0.0 recorder NOOP ok\r\n"),
                        (b"QUIT\r\n", b"221 2.0.0 recorder bye\r\n")]),
    "imap": dict(starttls=b"a STARTTLS\r\n", ready=b"a OK Begin TLS negotiation now.\r\n",
                 after=[(b"c NOOP\r\n", b"c OK NOOP completed by recorder.\r\n"),
                        (b"d LOGOUT\r\n", b"* BYE recorder logging out\r\n"
                                          b"d OK Logout completed by recorder.\r\n")]),
    "pop3": dict(starttls=b"STLS\r\n", ready=b"+OK Begin TLS negotiation now.\r\n",
                 after=[(b"NOOP\r\n", b"+OK recorder NOOP\r\n"),
                        (b"QUIT\r\n", b"+OK recorder bye\r\n")]),
}
INJECTIONS = {
    "smtp": [b"RSET\r\n", b"MAIL FROM:<evil@x>\r\n",
             b"RSET\r\nMAIL FROM:<evil@x>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"],
    "imap": [b"b CAPABILITY\r\n", b"b LOGIN evil evil\r\nb2 SELECT INBOX\r\n",
             b"b NOOP\r\n" * 1300],
    "pop3": [b"CAPA\r\n", b"USER evil\r\nPASS evil\r\n", b"LIST\r\n" * 600],
}
# The last smtp/imap/pop3 entries ("flood") are larger than the protocol's line buffer
# (1000 / 8192 / 512 bytes): part of them is still in the socket when STARTTLS is seen.
INJECTIONS["smtp"].append(b"RSET\r\n" * 500)
CASES = [(p, i) for p in PROTO for i in range(len(INJECTIONS[p]))]


INJECTION_NAMES = {"smtp": ["rset", "mail", "transaction", "flood"],
                   "imap": ["capability", "login", "flood"],
                   "pop3": ["capa", "user-pass", "flood"]}


def case_id(c):
    p, i = c
    return f"{p}-{INJECTION_NAMES[p][i]}"


def read_reply(c, proto, tag=None):
    if proto == "smtp":
        return c.smtp_reply()
    if proto == "imap":
        return c.imap_reply(tag)
    return c.pop3_reply()


def pre_tls(c, proto):
    """Greeting (and EHLO for SMTP, as a real client would) before the STARTTLS."""
    c.greeting(proto)
    if proto == "smtp":
        reply = c.cmd("smtp", "EHLO client.example.test")
        assert reply.startswith(f"250-{H}\r\n".encode()) and b"STARTTLS" in reply, reply


def after_tls(c, proto):
    """The post-TLS commands; everything received must be exactly their replies."""
    got = b""
    for cmd, reply in PROTO[proto]["after"]:
        c.send(cmd)
        tag = cmd.split(b" ")[0] if proto == "imap" else None
        got += read_reply(c, proto, tag)
    rest, how = c.read_until_close(timeout=20)
    expected = b"".join(r for _c, r in PROTO[proto]["after"])
    assert got + rest == expected, (
        f"inside TLS the client received {got + rest!r}, expected only the replies to its "
        f"own commands {expected!r}")
    assert how in ("close_notify", "eof"), how


def assert_backend_got_exactly(rec, mark, proto, injected):
    conns = rec.since(mark)
    assert len(conns) == 1, f"expected one backend connection, got {conns}"
    rec.wait_closed(conns)
    data = conns[0].received()
    assert injected not in data, f"the backend received the injected bytes: {data!r}"
    for line in injected.split(b"\r\n"):
        if line:
            assert line not in data, f"the backend received {line!r}: {data!r}"
    expected = b"".join(cmd for cmd, _r in PROTO[proto]["after"])
    assert data == expected, f"backend received {data!r}, expected {expected!r}"


# --- one segment ---------------------------------------------------------------------------------

@pytest.mark.parametrize("level", ["encrypt", "may"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_injection_one_segment(recording_edge, case, level):
    proto, idx = case
    injected = INJECTIONS[proto][idx]
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    port = recording_edge.ports[proto + ("" if level == "encrypt" else "-may")]
    p = PROTO[proto]
    mark = rec.mark()
    with LineClient(port) as c:
        pre_tls(c, proto)
        c.send(p["starttls"] + injected)  # one sendall, TCP_NODELAY: one segment
        assert c.line() == p["ready"]
        extra = c.pending(QUIET)
        assert extra == b"", f"plaintext reply to the injected command: {extra!r}"
        c.starttls()
        # Inside TLS: exactly the replies to the commands sent after TLS, then the close.
        after_tls(c, proto)
    me.wait_for_log(CLOSE_LINE.format(port=c.local_port, tls="yes"))
    assert_backend_got_exactly(rec, mark, proto, injected)
    lines = me.wait_for_log(DISCARD_LINE.format(n=len(injected), port=c.local_port))
    assert len(lines) == 1, lines


# --- behind pipelined commands ------------------------------------------------------------------

PIPELINED_BEFORE = {
    "smtp": (b"EHLO client.example.test\r\nNOOP\r\n", [f"250-{H}\r\n".encode(),
                                                         b"250 2.0.0 Ok\r\n"]),
    "imap": (b"x1 CAPABILITY\r\nx2 NOOP\r\n", [b"* CAPABILITY ", b"x2 OK NOOP completed.\r\n"]),
    "pop3": (b"CAPA\r\nQUIX\r\n", [b"+OK Capability list follows\r\n",
                                     b"-ERR Unknown command.\r\n"]),
}


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_injection_behind_pipelined_commands(recording_edge, proto):
    """Commands before STARTTLS in the same segment are answered in order; what follows
    STARTTLS is discarded."""
    injected = INJECTIONS[proto][1]
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    p = PROTO[proto]
    before, expect = PIPELINED_BEFORE[proto]
    mark = rec.mark()
    with LineClient(recording_edge.ports[proto]) as c:
        c.greeting(proto)
        c.send(before + p["starttls"] + injected)
        if proto == "smtp":
            replies = [c.smtp_reply(), c.smtp_reply()]
        elif proto == "imap":
            replies = [c.imap_reply("x1"), c.imap_reply("x2")]
        else:
            replies = [c.pop3_reply(multiline=True), c.pop3_reply()]
        for got, want in zip(replies, expect):
            assert got.startswith(want), (got, want)
        assert c.line() == p["ready"]
        assert c.pending(QUIET) == b""
        c.starttls()
        after_tls(c, proto)
    me.wait_for_log(CLOSE_LINE.format(port=c.local_port, tls="yes"))
    assert_backend_got_exactly(rec, mark, proto, injected)
    me.wait_for_log(DISCARD_LINE.format(n=len(injected), port=c.local_port))


# --- split segments --------------------------------------------------------------------------------

@pytest.mark.parametrize("gap", [0.0, 0.05], ids=["back-to-back", "50ms-gap"])
@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_injection_split_segments(recording_edge, proto, gap):
    injected = INJECTIONS[proto][1]
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    p = PROTO[proto]
    mark = rec.mark()
    with LineClient(recording_edge.ports[proto]) as c:
        pre_tls(c, proto)
        c.send(p["starttls"])
        if gap:
            time.sleep(gap)
        c.send(injected)  # before reading the ready reply
        assert c.line() == p["ready"]
        extra = c.pending(QUIET)
        if extra:
            # The injected bytes reached the TLS layer as a bogus record: the only thing
            # allowed back is a TLS alert record (content type 21), never text.
            assert re.match(rb"\x15\x03[\x01-\x04]\x00\x02[\x01\x02].$", extra, re.S), \
                f"plaintext reply to the injected command: {extra!r}"
            handshake = f"failed: alert {extra!r} before ClientHello"
        else:
            try:
                c.starttls()
                # wrap_socket() does no handshake at all on a socket the peer has already
                # reset (mailedge closed on the injected bytes without an alert, as a
                # wolfSSL without max_fragment does): that is a failed handshake too.
                handshake = "ok" if c.sock.version() else "failed: reset before ClientHello"
            except (ssl.SSLError, ConnectionError, OSError) as e:
                handshake = f"failed: {e!r}"
        if handshake == "ok":
            after_tls(c, proto)
    if handshake == "ok":
        me.wait_for_log(CLOSE_LINE.format(port=c.local_port, tls="yes"))
        assert_backend_got_exactly(rec, mark, proto, injected)
        # If mailedge saw the bytes before the handshake it must have said so, with the
        # right count; if they arrived later they could not have left the handshake intact.
        for line in me.log_lines(ANY_DISCARD_LINE.format(port=c.local_port)):
            n = int(re.search(r"discarded (\d+) bytes", line).group(1))
            assert n == len(injected), line
    else:
        # The injected bytes broke the handshake: the backend was never contacted.
        me.wait_for_log(CLOSE_LINE.format(port=c.local_port, tls="no"))
        conns = rec.since(mark)
        assert conns == [], f"handshake {handshake}, yet the backend was contacted: {conns}"
    me.assert_alive()


# --- through to the real Postfix and Dovecot -------------------------------------------------------

def test_injection_real_postfix(starttls_edge, postfix):
    me = starttls_edge.me
    injected = b"MAIL FROM:<evil@example.test>\r\n"
    with LineClient(starttls_edge.ports["smtp"]) as c:
        pre_tls(c, "smtp")
        c.send(b"STARTTLS\r\n" + injected)
        assert c.line() == b"220 2.0.0 Ready to start TLS\r\n"
        assert c.pending(QUIET) == b""
        c.starttls()
        assert c.pending(QUIET) == b""
        # A fresh Postfix session: the injected MAIL never arrived, so RCPT needs MAIL.
        reply = c.cmd("smtp", "RCPT TO:<test@example.test>")
        assert reply.startswith(b"503 5.5.1 "), reply
        reply = c.cmd("smtp", "EHLO client.example.test")
        assert reply.startswith(b"250-backend.example.test\r\n"), reply
        assert not re.search(rb"^250[- ]STARTTLS", reply, re.M), reply
        assert c.cmd("smtp", "QUIT").startswith(b"221 ")
    me.wait_for_log(DISCARD_LINE.format(n=len(injected), port=c.local_port))
    me.wait_for_log(CLOSE_LINE.format(port=c.local_port, tls="yes"))
    assert "evil@example.test" not in postfix.log_text()


def test_injection_real_dovecot_imap(starttls_edge, dovecot):
    me = starttls_edge.me
    injected = b"b LOGIN test test\r\n"
    with LineClient(starttls_edge.ports["imap"]) as c:
        c.greeting("imap")
        c.send(b"a STARTTLS\r\n" + injected)
        assert c.line() == b"a OK Begin TLS negotiation now.\r\n"
        assert c.pending(QUIET) == b""
        c.starttls()
        assert c.pending(QUIET) == b""
        # Not logged in: the injected LOGIN never reached Dovecot.
        reply = c.cmd("imap", "c SELECT INBOX")
        assert re.search(rb"^c (BAD|NO) ", reply, re.M), reply
        reply = c.cmd("imap", "d LOGOUT")
        assert reply.endswith(b"\r\n") and re.search(rb"^d OK ", reply, re.M), reply
    me.wait_for_log(DISCARD_LINE.format(n=len(injected), port=c.local_port))
    me.wait_for_log(CLOSE_LINE.format(port=c.local_port, tls="yes"))


def test_injection_real_dovecot_pop3(starttls_edge, dovecot):
    me = starttls_edge.me
    injected = b"USER test\r\n"
    with LineClient(starttls_edge.ports["pop3"]) as c:
        c.greeting("pop3")
        c.send(b"STLS\r\n" + injected)
        assert c.line() == b"+OK Begin TLS negotiation now.\r\n"
        assert c.pending(QUIET) == b""
        c.starttls()
        assert c.pending(QUIET) == b""
        # PASS without USER: Dovecot never saw the injected USER.
        reply = c.cmd("pop3", "PASS test")
        assert reply.startswith(b"-ERR"), reply
        reply = c.cmd("pop3", "STAT")
        assert reply.startswith(b"-ERR"), reply
        assert c.cmd("pop3", "QUIT").startswith(b"+OK")
    me.wait_for_log(DISCARD_LINE.format(n=len(injected), port=c.local_port))
    me.wait_for_log(CLOSE_LINE.format(port=c.local_port, tls="yes"))
