"""STARTTLS listeners (issue 3): mailedge's own pre-TLS dialogue, byte for byte as in
protocols/BEHAVIOUR.md, the capabilities it offers (learned from the backend or static),
the relay filters after TLS, STARTTLS over TLS refused, plaintext relaying on `may`, and
pre-TLS robustness.

What reached the backend is proven with the recording backends (harness/recorder.py),
which advertise STARTTLS/STLS, AUTH, SASL-IR, LITERAL+, XCLIENT... and keep every byte they
receive; the real Postfix/Dovecot are used where their real capability lists matter."""

import re
import threading
import time

import pytest

from harness.clients import LineClient
from harness.configs import EDGE_HOSTNAME, starttls_listener_section
from harness.dovecot import IMAP_PORT, POP3_PORT
from harness.mailedge import render
from harness.ports import alloc_port
from harness.postfix import DEFAULT_PORT as POSTFIX_PORT
from harness.recorder import (HOSTNAME as REC_HOST, IMAP_CAPS as REC_IMAP_CAPS,
                              POP3_CAPA as REC_POP3_CAPA, SMTP_EHLO_KEYWORDS as REC_EHLO,
                              TRICKY_BODY, parse_ehlo, smtp_after_tls_ehlo)

pytestmark = pytest.mark.mailedge

H = EDGE_HOSTNAME
CLOSE_LINE = r"disconnect from unknown\[127\.0\.0\.1\]:{port}\b.*reason=\S+ tls={tls}\b"
PLAIN_LINE = (r"client unknown\[127\.0\.0\.1\]:{port} continues without STARTTLS: "
              r"relaying in plaintext \(security_level = may\)")
ENDED_LINE = r'pre-TLS dialogue with unknown\[127\.0\.0\.1\]:{port} ended: "{reply}"'

SMTP_GREETING = f"220 {H} ESMTP ready\r\n".encode()
IMAP_GREETING_RX = rb"^\* OK \[CAPABILITY ([^\]]*)\] " + re.escape(H.encode()) + \
    rb" IMAP ready\.\r\n$"
POP3_GREETING = f"+OK {H} POP3 ready.\r\n".encode()

SMTP_530 = b"530 5.7.0 Must issue a STARTTLS command first\r\n"
SMTP_READY = b"220 2.0.0 Ready to start TLS\r\n"
IMAP_READY = b"OK Begin TLS negotiation now.\r\n"
POP3_READY = b"+OK Begin TLS negotiation now.\r\n"
IMAP_NO_LOGIN = (b"NO [PRIVACYREQUIRED] Plaintext authentication disallowed: "
                 b"issue STARTTLS first.\r\n")
IMAP_BAD_CMD = b"BAD [PRIVACYREQUIRED] Command not permitted before STARTTLS.\r\n"
POP3_AUTH_ERR = b"-ERR [AUTH] Plaintext authentication disallowed: issue STLS first.\r\n"
POP3_UNKNOWN = b"-ERR Unknown command.\r\n"


# --- helpers ---------------------------------------------------------------------------------------

def greet(c, proto):
    g = c.greeting(proto)
    if proto == "smtp":
        assert g == SMTP_GREETING, g
    elif proto == "imap":
        assert re.match(IMAP_GREETING_RX, g), g
    else:
        assert g == POP3_GREETING, g
    return g


def imap_caps_of(reply):
    m = re.search(rb"^\* CAPABILITY (.*)\r\n", reply, re.M)
    assert m, reply
    return m.group(1).decode().split(" ")


def pop3_capa_lines(reply):
    lines = reply.decode().split("\r\n")
    assert lines[0].startswith("+OK") and lines[-2:] == [".", ""], reply
    return lines[1:-2]


def assert_session_closed(c, me, tls="no"):
    """The server closes the connection (FIN, or RST after unread input) and logs it."""
    data, how = c.read_until_close(timeout=20)
    assert how in ("eof", "reset", "close_notify"), (how, data)
    me.wait_for_log(CLOSE_LINE.format(port=c.local_port, tls=tls))
    return data


def assert_backend_untouched(rec, mark, what):
    conns = rec.since(mark)
    assert conns == [], f"{what}: the backend was contacted: {conns}"


def direct_smtp_ehlo(port, name="direct.example.test"):
    with LineClient(port) as c:
        c.greeting("smtp")
        reply = c.cmd("smtp", f"EHLO {name}")
        c.cmd("smtp", "QUIT")
    return parse_ehlo(reply)


def smtp_filter_before_tls(keywords, level):
    out = []
    for k in keywords:
        kw = k.split(" ", 1)[0].upper()
        if kw in ("STARTTLS", "XCLIENT", "XFORWARD"):
            continue
        if level == "encrypt" and (kw == "AUTH" or kw.startswith("AUTH=")):
            continue
        out.append(k)
    return out + ["STARTTLS"]


def imap_filter_before_tls(atoms, level):
    out = ["IMAP4rev1"]
    for a in atoms:
        u = a.upper()
        if u in ("IMAP4REV1", "STARTTLS", "LOGINDISABLED", "LITERAL+", "LITERAL-"):
            continue
        if level == "encrypt" and (u.startswith("AUTH=") or u == "SASL-IR"):
            continue
        out.append(a)
    out.append("STARTTLS")
    if level == "encrypt":
        out.append("LOGINDISABLED")
    return out


def pop3_filter_before_tls(lines, level):
    out = []
    for l in lines:
        kw = l.split(" ", 1)[0].upper()
        if kw in ("STLS", "IMPLEMENTATION"):
            continue
        if level == "encrypt" and kw in ("USER", "SASL"):
            continue
        out.append(l)
    return out + ["STLS"]


def assert_same_caps(got, expected, what):
    assert len(got) == len(set(got)), f"{what}: duplicates in {got}"
    assert set(got) == set(expected), f"{what}: got {got}, expected {expected}"


def upgrade(c, proto, tag="s1"):
    """Send STARTTLS/STLS, read the ready reply, handshake."""
    if proto == "smtp":
        assert c.cmd("smtp", "STARTTLS") == SMTP_READY
    elif proto == "imap":
        assert c.cmd("imap", f"{tag} STARTTLS") == f"{tag} ".encode() + IMAP_READY
    else:
        assert c.cmd("pop3", "STLS") == POP3_READY
    c.starttls()


class GoodSession:
    """A STARTTLS session through the recording edge that is established (TLS, one
    command answered by the backend) before some misbehaviour and completes after it.
    It uses another protocol than the one under test (avoid), so the recorder of that
    one sees no connection from it."""

    def __init__(self, edge, avoid=None):
        self.edge = edge
        self.proto = "pop3" if avoid == "imap" else "imap"

    def __enter__(self):
        p = self.proto
        self.c = LineClient(self.edge.ports[p], timeout=20)
        greet(self.c, p)
        upgrade(self.c, p, "g0")
        assert self.c.cmd(p, NOOP[p][0]) == NOOP[p][1]
        return self

    def __exit__(self, exc_type, exc, tb):
        p = self.proto
        try:
            if exc_type is None:
                assert self.c.cmd(p, NOOP[p][0]) == NOOP[p][1], "good session broken"
                assert self.c.cmd(p, QUIT[p][0]) == QUIT[p][1], "good session broken"
        finally:
            self.c.close()
        self.edge.me.assert_alive()
        return False


# --- 2. mandatory mode (encrypt): refusals that never reach the backend -------------------------------

@pytest.mark.parametrize("command", [
    "MAIL FROM:<sender@example.test>", "RCPT TO:<test@example.test>", "DATA", "BDAT 10 LAST",
    "AUTH PLAIN AHRlc3QAdGVzdA==", "VRFY test", "EXPN staff", "ETRN example.test", "HELP",
    "XCLIENT NAME=spoofed.example ADDR=192.0.2.1", "XFORWARD NAME=spoofed.example",
    "FROB nicate"])
def test_smtp_encrypt_refuses_before_tls(recording_edge, command):
    me, rec = recording_edge.me, recording_edge.recorders["smtp"]
    mark = rec.mark()
    with LineClient(recording_edge.ports["smtp"]) as c:
        greet(c, "smtp")
        host, kws = parse_ehlo(c.cmd("smtp", "EHLO client.example.test"))
        assert host == H
        assert "STARTTLS" in kws and not [k for k in kws if k.upper().startswith("AUTH")], kws
        assert c.cmd("smtp", command) == SMTP_530
        assert c.cmd("smtp", "NOOP") == b"250 2.0.0 Ok\r\n"
        assert c.cmd("smtp", "QUIT") == b"221 2.0.0 Bye\r\n"
        assert_session_closed(c, me)
    me.wait_for_log(ENDED_LINE.format(port=c.local_port, reply="221 2.0.0 Bye"))
    assert_backend_untouched(rec, mark, command)


def test_smtp_encrypt_dialogue_basics(recording_edge):
    me, rec = recording_edge.me, recording_edge.recorders["smtp"]
    mark = rec.mark()
    with LineClient(recording_edge.ports["smtp"]) as c:
        greet(c, "smtp")
        assert c.cmd("smtp", "HELO client.example.test") == f"250 {H}\r\n".encode()
        assert c.cmd("smtp", "EHLO") == b"501 5.5.4 Syntax: EHLO hostname\r\n"
        assert c.cmd("smtp", "HELO") == b"501 5.5.4 Syntax: HELO hostname\r\n"
        assert c.cmd("smtp", "RSET") == b"250 2.0.0 Ok\r\n"
        assert c.cmd("smtp", "noop") == b"250 2.0.0 Ok\r\n"  # case-insensitive
        # A bare LF ends a line too.
        c.send(b"NOOP\n")
        assert c.smtp_reply() == b"250 2.0.0 Ok\r\n"
        assert c.cmd("smtp", "QUIT") == b"221 2.0.0 Bye\r\n"
        assert_session_closed(c, me)
    assert_backend_untouched(rec, mark, "pre-TLS SMTP dialogue")


@pytest.mark.parametrize("command,reply", [
    ("LOGIN test test", IMAP_NO_LOGIN),
    ("AUTHENTICATE PLAIN", IMAP_NO_LOGIN),
    ("SELECT INBOX", IMAP_BAD_CMD),
    ("ENABLE UTF8=ACCEPT", IMAP_BAD_CMD),
    ("ID NIL", IMAP_BAD_CMD),
], ids=["login", "authenticate", "select", "enable", "id"])
def test_imap_encrypt_refuses_before_tls(recording_edge, command, reply):
    me, rec = recording_edge.me, recording_edge.recorders["imap"]
    mark = rec.mark()
    with LineClient(recording_edge.ports["imap"]) as c:
        g = greet(c, "imap")
        caps = c.cmd("imap", "a1 CAPABILITY")
        atoms = imap_caps_of(caps)
        assert caps.endswith(b"a1 OK Capability completed.\r\n"), caps
        assert re.match(IMAP_GREETING_RX, g).group(1).decode().split(" ") == atoms
        assert "STARTTLS" in atoms and "LOGINDISABLED" in atoms, atoms
        assert not [a for a in atoms if a.upper().startswith("AUTH=")], atoms
        assert "SASL-IR" not in atoms and "LITERAL+" not in atoms, atoms
        assert c.cmd("imap", f"a2 {command}") == b"a2 " + reply
        assert c.cmd("imap", "a3 NOOP") == b"a3 OK NOOP completed.\r\n"
        assert c.cmd("imap", "a4 LOGOUT") == b"* BYE Logging out\r\na4 OK Logout completed.\r\n"
        assert_session_closed(c, me)
    assert_backend_untouched(rec, mark, command)


@pytest.mark.parametrize("command,reply", [
    ("USER test", POP3_AUTH_ERR), ("PASS test", POP3_AUTH_ERR),
    ("APOP test c4c9334bac560ecc979e58001b3e22fb", POP3_AUTH_ERR),
    ("AUTH PLAIN", POP3_AUTH_ERR), ("STAT", POP3_UNKNOWN), ("RETR 1", POP3_UNKNOWN),
], ids=["user", "pass", "apop", "auth", "stat", "retr"])
def test_pop3_encrypt_refuses_before_tls(recording_edge, command, reply):
    me, rec = recording_edge.me, recording_edge.recorders["pop3"]
    mark = rec.mark()
    with LineClient(recording_edge.ports["pop3"]) as c:
        greet(c, "pop3")
        capa = c.cmd("pop3", "CAPA", multiline=True)
        assert capa.startswith(b"+OK Capability list follows\r\n"), capa
        lines = pop3_capa_lines(capa)
        assert "STLS" in lines and "USER" not in lines, lines
        assert not [l for l in lines if l.upper().startswith("SASL")], lines
        assert c.cmd("pop3", command) == reply
        assert c.cmd("pop3", "QUIT") == b"+OK Logging out.\r\n"
        assert_session_closed(c, me)
    assert_backend_untouched(rec, mark, command)


def _count(text, rx):
    return len(re.findall(rx, text, re.M))


def wait_count(get_text, rx, at_least, timeout=15):
    """Poll a log until rx matches at least `at_least` times (bounded); return the
    final count after a short settle."""
    deadline = time.monotonic() + timeout
    while _count(get_text(), rx) < at_least and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    return _count(get_text(), rx)


def test_refusals_on_real_backends_never_reach_them(starttls_edge, postfix, dovecot):
    """The same refusals in front of the real Postfix and Dovecot: their logs show no new
    connection for the whole dialogue."""
    me, ports = starttls_edge.me, starttls_edge.ports
    pf_before = _count(postfix.log_text(), r"smtpd\[\d+\]: connect from ")
    dc_before = _count(dovecot.log_text(), r"(imap|pop3)-login: ")
    with LineClient(ports["smtp"]) as c:
        greet(c, "smtp")
        c.cmd("smtp", "EHLO client.example.test")
        assert c.cmd("smtp", "MAIL FROM:<sender@example.test>") == SMTP_530
        assert c.cmd("smtp", "QUIT") == b"221 2.0.0 Bye\r\n"
        assert_session_closed(c, me)
    with LineClient(ports["imap"]) as c:
        greet(c, "imap")
        assert c.cmd("imap", "a LOGIN test test") == b"a " + IMAP_NO_LOGIN
        assert c.cmd("imap", "b LOGOUT").endswith(b"b OK Logout completed.\r\n")
        assert_session_closed(c, me)
    with LineClient(ports["pop3"]) as c:
        greet(c, "pop3")
        assert c.cmd("pop3", "USER test") == POP3_AUTH_ERR
        assert c.cmd("pop3", "QUIT") == b"+OK Logging out.\r\n"
        assert_session_closed(c, me)
    # Marker sessions straight to Postfix and Dovecot: once their log lines are there,
    # "no other new line" is not just a slow log.
    with LineClient(POSTFIX_PORT) as c:
        c.greeting("smtp")
        c.cmd("smtp", "QUIT")
    with LineClient(IMAP_PORT) as c:
        c.line()
        c.cmd("imap", "m LOGOUT")
    with LineClient(POP3_PORT) as c:
        c.line()
        c.cmd("pop3", "QUIT")
    pf_after = wait_count(postfix.log_text, r"smtpd\[\d+\]: connect from ", pf_before + 1)
    dc_after = wait_count(dovecot.log_text, r"(imap|pop3)-login: ", dc_before + 2)
    assert pf_after == pf_before + 1, "Postfix saw a connection from the refused session"
    assert dc_after == dc_before + 2, "Dovecot saw a connection from a refused session"


# --- 4. capability learning -------------------------------------------------------------------------------

def test_smtp_ehlo_learned_from_postfix(starttls_edge, postfix):
    me = starttls_edge.me
    _host, pf = direct_smtp_ehlo(POSTFIX_PORT)
    assert any(k.startswith("SIZE ") for k in pf) and "8BITMIME" in pf, pf
    # The probe's log line lists Postfix's keywords as learned.
    line = me.wait_for_log(r"\[listener smtp\]: backend \[backend postfix\] capabilities: ")[0]
    assert line.split("capabilities: ", 1)[1].split(", ") == pf, line
    for listener, level in (("smtp", "encrypt"), ("smtp-may", "may")):
        with LineClient(starttls_edge.ports[listener]) as c:
            greet(c, "smtp")
            host, kws = parse_ehlo(c.cmd("smtp", "EHLO client.example.test"))
            c.cmd("smtp", "QUIT")
        assert host == H
        assert_same_caps(kws, smtp_filter_before_tls(pf, level), listener)
        size = [k for k in pf if k.startswith("SIZE ")][0]
        assert size in kws and "8BITMIME" in kws, kws


def test_imap_capability_learned_from_dovecot(starttls_edge, dovecot):
    me = starttls_edge.me
    with LineClient(IMAP_PORT) as c:
        c.line()
        dc = imap_caps_of(c.cmd("imap", "d1 CAPABILITY"))
        c.cmd("imap", "d2 LOGOUT")
    assert "AUTH=PLAIN" in dc, dc
    line = me.wait_for_log(r"\[listener imap\]: backend \[backend imap\] capabilities: ")[0]
    assert line.split("capabilities: ", 1)[1].split(", ") == dc, line
    for listener, level in (("imap", "encrypt"), ("imap-may", "may")):
        with LineClient(starttls_edge.ports[listener]) as c:
            g = greet(c, "imap")
            atoms = imap_caps_of(c.cmd("imap", "a CAPABILITY"))
            c.cmd("imap", "b LOGOUT")
        assert re.match(IMAP_GREETING_RX, g).group(1).decode().split(" ") == atoms
        assert_same_caps(atoms, imap_filter_before_tls(dc, level), listener)


def test_pop3_capa_learned_from_dovecot(starttls_edge, dovecot):
    me = starttls_edge.me
    with LineClient(POP3_PORT) as c:
        c.line()
        dc = pop3_capa_lines(c.cmd("pop3", "CAPA", multiline=True))
        c.cmd("pop3", "QUIT")
    assert "USER" in dc, dc
    line = me.wait_for_log(r"\[listener pop3\]: backend \[backend pop3\] capabilities: ")[0]
    assert line.split("capabilities: ", 1)[1].split(", ") == dc, line
    for listener, level in (("pop3", "encrypt"), ("pop3-may", "may")):
        with LineClient(starttls_edge.ports[listener]) as c:
            greet(c, "pop3")
            lines = pop3_capa_lines(c.cmd("pop3", "CAPA", multiline=True))
            c.cmd("pop3", "QUIT")
        assert_same_caps(lines, pop3_filter_before_tls(dc, level), listener)


@pytest.mark.parametrize("level", ["encrypt", "may"])
def test_capabilities_learned_from_recorder_filtered(recording_edge, level):
    """The recorder advertises STARTTLS, AUTH, XCLIENT, XFORWARD, SASL-IR, LITERAL+, STLS,
    USER, SASL, IMPLEMENTATION: exactly the filter of BEHAVIOUR.md applies."""
    sfx = "" if level == "encrypt" else "-may"
    ports = recording_edge.ports
    with LineClient(ports["smtp" + sfx]) as c:
        greet(c, "smtp")
        host, kws = parse_ehlo(c.cmd("smtp", "EHLO client.example.test"))
        c.cmd("smtp", "QUIT")
    assert_same_caps(kws, smtp_filter_before_tls(REC_EHLO, level), "smtp")
    with LineClient(ports["imap" + sfx]) as c:
        greet(c, "imap")
        atoms = imap_caps_of(c.cmd("imap", "a CAPABILITY"))
        c.cmd("imap", "b LOGOUT")
    assert_same_caps(atoms, imap_filter_before_tls(REC_IMAP_CAPS, level), "imap")
    with LineClient(ports["pop3" + sfx]) as c:
        greet(c, "pop3")
        lines = pop3_capa_lines(c.cmd("pop3", "CAPA", multiline=True))
        c.cmd("pop3", "QUIT")
    assert_same_caps(lines, pop3_filter_before_tls(REC_POP3_CAPA, level), "pop3")


def test_static_capabilities_override_probe(starttls_edge):
    me, ports, static = starttls_edge.me, starttls_edge.ports, starttls_edge.static
    items = {p: [i.strip() for i in static[p].split(",")] for p in static}
    with LineClient(ports["smtp-static"]) as c:
        greet(c, "smtp")
        _host, kws = parse_ehlo(c.cmd("smtp", "EHLO client.example.test"))
        c.cmd("smtp", "QUIT")
    assert_same_caps(kws, items["smtp"] + ["STARTTLS"], "smtp static")
    with LineClient(ports["imap-static"]) as c:
        greet(c, "imap")
        atoms = imap_caps_of(c.cmd("imap", "a CAPABILITY"))
        c.cmd("imap", "b LOGOUT")
    assert_same_caps(atoms, items["imap"] + ["STARTTLS", "LOGINDISABLED"], "imap static")
    with LineClient(ports["pop3-static"]) as c:
        greet(c, "pop3")
        lines = pop3_capa_lines(c.cmd("pop3", "CAPA", multiline=True))
        c.cmd("pop3", "QUIT")
    assert_same_caps(lines, items["pop3"] + ["STLS"], "pop3 static")
    # No probe for listeners with a static list.
    assert not me.log_lines(r"\[listener \w+-static\]: backend .* capabilities"), \
        me.log_text()[-3000:]


# --- 4b. relay filters after TLS (the recorder DOES advertise STARTTLS/STLS) -----------------------------

@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_smtp_after_tls_ehlo_filtered(recording_edge, kind):
    me, rec = recording_edge.me, recording_edge.recorders["smtp"]
    port = recording_edge.ports["smtp" if kind == "starttls" else "smtp-implicit"]
    mark = rec.mark()
    with LineClient(port) as c:
        if kind == "starttls":
            greet(c, "smtp")
            upgrade(c, "smtp")
        else:
            c.starttls()
            # Implicit TLS: the backend's own greeting is relayed.
            assert c.smtp_reply() == f"220 {REC_HOST} ESMTP recorder\r\n".encode()
        assert c.cmd("smtp", "EHLO client.example.test") == smtp_after_tls_ehlo()
        assert c.cmd("smtp", "QUIT") == b"221 2.0.0 recorder bye\r\n"
        assert_session_closed(c, me, tls="yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].received() == b"EHLO client.example.test\r\nQUIT\r\n"


@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_imap_after_tls_capability_filtered(recording_edge, kind):
    me, rec = recording_edge.me, recording_edge.recorders["imap"]
    port = recording_edge.ports["imap" if kind == "starttls" else "imap-implicit"]
    no_tls = [a for a in REC_IMAP_CAPS if a != "STARTTLS"]
    mark = rec.mark()
    with LineClient(port) as c:
        if kind == "starttls":
            greet(c, "imap")
            upgrade(c, "imap", "a0")
        else:
            c.starttls()
            # The backend's greeting, with STARTTLS taken out of its [CAPABILITY] code.
            assert c.line() == (f"* OK [CAPABILITY {' '.join(no_tls)}] "
                                f"recorder ready.\r\n").encode()
        assert c.cmd("imap", "a1 CAPABILITY") == (
            f"* CAPABILITY {' '.join(no_tls)}\r\n"
            f"a1 OK Capability completed by recorder.\r\n").encode()
        assert c.cmd("imap", "a2 LOGIN user pass") == (
            b"a2 OK [CAPABILITY IMAP4rev1 ID IDLE UIDPLUS] Logged in by recorder.\r\n")
        assert c.cmd("imap", "a3 LOGOUT") == (
            b"* BYE recorder logging out\r\na3 OK Logout completed by recorder.\r\n")
        assert_session_closed(c, me, tls="yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].received() == b"a1 CAPABILITY\r\na2 LOGIN user pass\r\na3 LOGOUT\r\n"


@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_pop3_after_tls_capa_filtered(recording_edge, kind):
    me, rec = recording_edge.me, recording_edge.recorders["pop3"]
    port = recording_edge.ports["pop3" if kind == "starttls" else "pop3-implicit"]
    mark = rec.mark()
    with LineClient(port) as c:
        if kind == "starttls":
            greet(c, "pop3")
            upgrade(c, "pop3")
        else:
            c.starttls()
            assert c.line() == b"+OK recorder POP3 ready.\r\n"
        expected = ("+OK recorder capability list follows\r\n" +
                    "".join(f"{l}\r\n" for l in REC_POP3_CAPA if l != "STLS") + ".\r\n")
        assert c.cmd("pop3", "CAPA", multiline=True) == expected.encode()
        assert c.cmd("pop3", "QUIT") == b"+OK recorder bye\r\n"
        assert_session_closed(c, me, tls="yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].received() == b"CAPA\r\nQUIT\r\n"


# --- 4c. the relay filters leave message data alone ------------------------------------------------------

def dot_stuff(body):
    return b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                    for l in body.split(b"\r\n")[:-1])


def open_relay(recording_edge, proto, kind, tag="t0"):
    """A LineClient relaying to the recorder: after STARTTLS, on implicit TLS (greeting
    read), or ("may") still in plaintext on the may listener."""
    port = recording_edge.ports[proto + {"starttls": "", "implicit": "-implicit",
                                          "may": "-may"}[kind]]
    c = LineClient(port)
    if kind == "implicit":
        c.starttls()
        c.greeting(proto)
    else:
        greet(c, proto)
        if kind == "starttls":
            upgrade(c, proto, tag)
    return c


@pytest.mark.parametrize("pipelined", [False, True], ids=["lockstep", "pipelined"])
@pytest.mark.parametrize("kind", ["starttls", "implicit", "may"])
def test_smtp_data_body_untouched(recording_edge, kind, pipelined):
    """DATA bodies full of STARTTLS / 250-STARTTLS / XCLIENT lines reach the backend
    byte-exact, and its replies come back in order. On `may` the MAIL is what switches
    to plaintext relaying: pipelined, MAIL/RCPT/DATA arrive in one segment then."""
    me, rec = recording_edge.me, recording_edge.recorders["smtp"]
    mark = rec.mark()
    body = dot_stuff(TRICKY_BODY) + b".\r\n"
    txn = [(b"MAIL FROM:<a@example.test>\r\n", b"250 2.1.0 recorder MAIL ok\r\n"),
           (b"RCPT TO:<b@example.test>\r\n", b"250 2.1.5 recorder RCPT ok\r\n"),
           (b"DATA\r\n", b"354 recorder: end data with <CR><LF>.<CR><LF>\r\n")]
    c = open_relay(recording_edge, "smtp", kind)
    with c:
        ehlo = c.cmd("smtp", "EHLO client.example.test")
        assert ehlo.startswith(f"250-{REC_HOST if kind != 'may' else H}\r\n".encode()), ehlo
        if pipelined:
            c.send(b"".join(cmd for cmd, _r in txn))
            got = b"".join(c.smtp_reply() for _ in txn)
            assert got == b"".join(r for _c, r in txn)
        else:
            for cmd, reply in txn:
                c.send(cmd)
                assert c.smtp_reply() == reply
        c.send(body)
        assert c.smtp_reply() == b"250 2.0.0 recorder queued\r\n"
        assert c.cmd("smtp", "QUIT") == b"221 2.0.0 recorder bye\r\n"
        assert_session_closed(c, me, tls="no" if kind == "may" else "yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].literals == [body]
    assert conns[0].received() == (b"EHLO client.example.test\r\n" +
                                   b"".join(cmd for cmd, _r in txn) + body + b"QUIT\r\n")


@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_imap_literals_untouched(recording_edge, kind):
    """Literals in both directions ({n}, {n+}, FETCH BODY[]) containing STARTTLS and
    CAPABILITY lines pass untouched; the filter is still in step afterwards."""
    me, rec = recording_edge.me, recording_edge.recorders["imap"]
    mark = rec.mark()
    n = len(TRICKY_BODY)
    c = open_relay(recording_edge, "imap", kind)
    with c:
        c.send(f"a1 APPEND INBOX {{{n}}}\r\n".encode())
        assert c.line() == b"+ Ready for literal data\r\n"
        c.send(TRICKY_BODY + b"\r\n")
        assert c.imap_reply("a1") == b"a1 OK APPEND completed by recorder.\r\n"
        c.send(f"a2 APPEND INBOX {{{n}+}}\r\n".encode() + TRICKY_BODY + b"\r\n")
        assert c.imap_reply("a2") == b"a2 OK APPEND completed by recorder.\r\n"
        assert c.cmd("imap", "a3 UID FETCH 1 BODY[]") == (
            f"* 1 FETCH (UID 1 BODY[] {{{n}}}\r\n".encode() + TRICKY_BODY +
            b")\r\na3 OK FETCH completed by recorder.\r\n")
        caps = c.cmd("imap", "a4 CAPABILITY")
        assert imap_caps_of(caps) == [a for a in REC_IMAP_CAPS if a != "STARTTLS"], caps
        assert c.cmd("imap", "a5 LOGOUT").endswith(b"a5 OK Logout completed by recorder.\r\n")
        assert_session_closed(c, me, tls="yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].literals == [TRICKY_BODY, TRICKY_BODY]
    assert conns[0].received() == (
        f"a1 APPEND INBOX {{{n}}}\r\n".encode() + TRICKY_BODY + b"\r\n" +
        f"a2 APPEND INBOX {{{n}+}}\r\n".encode() + TRICKY_BODY + b"\r\n" +
        b"a3 UID FETCH 1 BODY[]\r\na4 CAPABILITY\r\na5 LOGOUT\r\n")


@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_pop3_retr_body_untouched(recording_edge, kind):
    """A RETR body with STLS / CAPA-like lines passes untouched (dot-stuffing intact);
    the CAPA after it is still filtered."""
    me, rec = recording_edge.me, recording_edge.recorders["pop3"]
    mark = rec.mark()
    c = open_relay(recording_edge, "pop3", kind)
    with c:
        assert c.cmd("pop3", "RETR 1", multiline=True) == (
            f"+OK {len(TRICKY_BODY)} octets\r\n".encode() + dot_stuff(TRICKY_BODY) + b".\r\n")
        capa = pop3_capa_lines(c.cmd("pop3", "CAPA", multiline=True))
        assert capa == [l for l in REC_POP3_CAPA if l != "STLS"], capa
        assert c.cmd("pop3", "QUIT") == b"+OK recorder bye\r\n"
        assert_session_closed(c, me, tls="yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].received() == b"RETR 1\r\nCAPA\r\nQUIT\r\n"


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_filters_with_backend_replies_in_tiny_segments(recording_edge, proto):
    """The recorder sends every reply in 3-byte segments ("NOOP slow"): the filters must
    still remove STARTTLS/STLS, keep everything else and keep pipelined replies in order."""
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    mark = rec.mark()
    no_tls_caps = [a for a in REC_IMAP_CAPS if a != "STARTTLS"]
    capa = ("+OK recorder capability list follows\r\n" +
            "".join(f"{l}\r\n" for l in REC_POP3_CAPA if l != "STLS") + ".\r\n").encode()
    c = open_relay(recording_edge, proto, "starttls")
    with c:
        if proto == "smtp":
            sent = b"NOOP slow\r\nEHLO a.example\r\nNOOP\r\nEHLO b.example\r\nQUIT\r\n"
            assert c.cmd("smtp", "NOOP slow") == b"250 2.0.0 recorder NOOP ok\r\n"
            c.send(b"EHLO a.example\r\nNOOP\r\nEHLO b.example\r\n")
            got = c.smtp_reply() + c.smtp_reply() + c.smtp_reply()
            assert got == (smtp_after_tls_ehlo() + b"250 2.0.0 recorder NOOP ok\r\n" +
                           smtp_after_tls_ehlo())
            assert c.cmd("smtp", "QUIT") == b"221 2.0.0 recorder bye\r\n"
        elif proto == "imap":
            sent = (b"s NOOP slow\r\na1 CAPABILITY\r\na2 UID FETCH 1 BODY[]\r\n"
                    b"a3 LOGIN u p\r\na4 LOGOUT\r\n")
            assert c.cmd("imap", "s NOOP slow") == b"s OK NOOP completed by recorder.\r\n"
            assert c.cmd("imap", "a1 CAPABILITY") == (
                f"* CAPABILITY {' '.join(no_tls_caps)}\r\n"
                f"a1 OK Capability completed by recorder.\r\n").encode()
            assert c.cmd("imap", "a2 UID FETCH 1 BODY[]") == (
                f"* 1 FETCH (UID 1 BODY[] {{{len(TRICKY_BODY)}}}\r\n".encode() + TRICKY_BODY +
                b")\r\na2 OK FETCH completed by recorder.\r\n")
            assert c.cmd("imap", "a3 LOGIN u p") == (
                b"a3 OK [CAPABILITY IMAP4rev1 ID IDLE UIDPLUS] Logged in by recorder.\r\n")
            assert c.cmd("imap", "a4 LOGOUT") == (
                b"* BYE recorder logging out\r\na4 OK Logout completed by recorder.\r\n")
        else:
            sent = b"NOOP slow\r\nCAPA\r\nRETR 1\r\nCAPA\r\nCAPA\r\nQUIT\r\n"
            assert c.cmd("pop3", "NOOP slow") == b"+OK recorder NOOP\r\n"
            assert c.cmd("pop3", "CAPA", multiline=True) == capa
            assert c.cmd("pop3", "RETR 1", multiline=True) == (
                f"+OK {len(TRICKY_BODY)} octets\r\n".encode() + dot_stuff(TRICKY_BODY) +
                b".\r\n")
            c.send(b"CAPA\r\nSTLS\r\nCAPA\r\n")
            got = (c.pop3_reply(multiline=True) + c.pop3_reply() +
                   c.pop3_reply(multiline=True))
            assert got == capa + b"-ERR TLS is already active.\r\n" + capa
            assert c.cmd("pop3", "QUIT") == b"+OK recorder bye\r\n"
        assert_session_closed(c, me, tls="yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].received() == sent


def test_starttls_verb_case_and_bare_lf(recording_edge):
    """STARTTLS/STLS in any case, ended by a bare LF, starts TLS like the canonical form."""
    me = recording_edge.me
    for proto, line, ready in (("smtp", b"starttls\n", SMTP_READY),
                               ("imap", b"a StartTLS\n", b"a " + IMAP_READY),
                               ("pop3", b"stls\n", POP3_READY)):
        with LineClient(recording_edge.ports[proto]) as c:
            greet(c, proto)
            c.send(line)
            assert c.line() == ready, proto
            c.starttls()
            assert c.cmd(proto, NOOP[proto][0]) == NOOP[proto][1], proto
            assert c.cmd(proto, QUIT[proto][0]) == QUIT[proto][1], proto
            assert_session_closed(c, me, tls="yes")


@pytest.mark.parametrize("first", ["HELO", "none"])
def test_may_smtp_replays_helo_or_nothing(recording_edge, first):
    """On `may`, a HELO is replayed as HELO; without any, the pending command goes first."""
    me, rec = recording_edge.me, recording_edge.recorders["smtp"]
    mark = rec.mark()
    with LineClient(recording_edge.ports["smtp-may"]) as c:
        greet(c, "smtp")
        if first == "HELO":
            assert c.cmd("smtp", "HELO old.example.test") == f"250 {H}\r\n".encode()
        assert c.cmd("smtp", "MAIL FROM:<a@example.test>") == b"250 2.1.0 recorder MAIL ok\r\n"
        assert c.cmd("smtp", "QUIT") == b"221 2.0.0 recorder bye\r\n"
        assert_session_closed(c, me, tls="no")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    replay = b"HELO old.example.test\r\n" if first == "HELO" else b""
    assert conns[0].received() == replay + b"MAIL FROM:<a@example.test>\r\nQUIT\r\n"


# --- 5. STARTTLS over TLS refused, never forwarded; the session goes on --------------------------------------

REFUSED_OVER_TLS = {
    "smtp": ("STARTTLS", b"554 5.5.1 Error: TLS already active\r\n"),
    "imap": ("t1 STARTTLS", b"t1 BAD TLS is already active.\r\n"),
    "pop3": ("STLS", b"-ERR TLS is already active.\r\n"),
}
NOOP = {
    "smtp": ("NOOP", b"250 2.0.0 recorder NOOP ok\r\n"),
    "imap": ("t2 NOOP", b"t2 OK NOOP completed by recorder.\r\n"),
    "pop3": ("NOOP", b"+OK recorder NOOP\r\n"),
}
QUIT = {
    "smtp": ("QUIT", b"221 2.0.0 recorder bye\r\n"),
    "imap": ("t3 LOGOUT", b"* BYE recorder logging out\r\nt3 OK Logout completed by recorder.\r\n"),
    "pop3": ("QUIT", b"+OK recorder bye\r\n"),
}


@pytest.mark.parametrize("kind", ["starttls", "implicit", "may"])
@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_starttls_over_tls_refused(recording_edge, proto, kind):
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    port = recording_edge.ports[proto + {"starttls": "", "implicit": "-implicit",
                                          "may": "-may"}[kind]]
    mark = rec.mark()
    with LineClient(port) as c:
        if kind == "implicit":
            c.starttls()
            c.greeting(proto)  # the recorder's own greeting
        else:
            greet(c, proto)
            upgrade(c, proto, "t0")
        cmd, refusal = REFUSED_OVER_TLS[proto]
        assert c.cmd(proto, cmd) == refusal
        # The session is intact: the next command is answered by the backend.
        assert c.cmd(proto, NOOP[proto][0]) == NOOP[proto][1]
        # Pipelined: NOOP, STARTTLS, NOOP in one segment; replies in order.
        n, r = NOOP[proto]
        if proto == "imap":
            c.send(b"p1 NOOP\r\np2 STARTTLS\r\np3 NOOP\r\n")
            got = c.imap_reply("p3")
            # Tags tell replies apart: p2's refusal may come before or after p1's OK.
            assert sorted(got.splitlines(keepends=True)) == sorted([
                b"p1 OK NOOP completed by recorder.\r\n", b"p2 BAD TLS is already active.\r\n",
                b"p3 OK NOOP completed by recorder.\r\n"]), got
        else:
            c.send(f"{n}\r\n{cmd}\r\n{n}\r\n".encode())
            got = b"".join(c.smtp_reply() if proto == "smtp" else c.pop3_reply()
                           for _ in range(3))
            assert got == r + refusal + r
        assert c.cmd(proto, QUIT[proto][0]) == QUIT[proto][1]
        assert_session_closed(c, me, tls="yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    data = conns[0].received()
    assert b"STARTTLS" not in data.upper() and b"STLS" not in data.upper(), data
    assert not [l for l in conns[0].commands if b"TLS" in l.upper()], conns[0].commands


# --- 3b. may: plaintext relay, with the filters for plaintext --------------------------------------------------

def test_may_smtp_plaintext_relay_replays_ehlo(recording_edge):
    me, rec = recording_edge.me, recording_edge.recorders["smtp"]
    mark = rec.mark()
    with LineClient(recording_edge.ports["smtp-may"]) as c:
        greet(c, "smtp")
        _h, kws = parse_ehlo(c.cmd("smtp", "EHLO plain.example.test"))
        assert "AUTH PLAIN LOGIN" in kws and "STARTTLS" in kws, kws  # may keeps AUTH
        assert c.cmd("smtp", "MAIL FROM:<sender@example.test>") == \
            b"250 2.1.0 recorder MAIL ok\r\n"
        # Relaying in plaintext now: STARTTLS is no longer possible, and not forwarded.
        assert c.cmd("smtp", "STARTTLS") == b"502 5.5.2 Error: command not recognized\r\n"
        assert c.cmd("smtp", "XCLIENT ADDR=192.0.2.1") == \
            b"502 5.5.2 Error: command not recognized\r\n"
        assert c.cmd("smtp", "EHLO plain.example.test") == smtp_after_tls_ehlo()
        assert c.cmd("smtp", "QUIT") == b"221 2.0.0 recorder bye\r\n"
        assert_session_closed(c, me, tls="no")
    me.wait_for_log(PLAIN_LINE.format(port=c.local_port))
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    # The replayed EHLO, then the pending command, then the rest; nothing else.
    assert conns[0].received() == (b"EHLO plain.example.test\r\n"
                                   b"MAIL FROM:<sender@example.test>\r\n"
                                   b"EHLO plain.example.test\r\nQUIT\r\n")


def test_may_imap_plaintext_relay(recording_edge):
    me, rec = recording_edge.me, recording_edge.recorders["imap"]
    mark = rec.mark()
    with LineClient(recording_edge.ports["imap-may"]) as c:
        greet(c, "imap")
        assert c.cmd("imap", "a1 LOGIN user pass") == (
            b"a1 OK [CAPABILITY IMAP4rev1 ID IDLE UIDPLUS] Logged in by recorder.\r\n")
        assert c.cmd("imap", "a2 STARTTLS") == b"a2 BAD STARTTLS not available on this connection.\r\n"
        assert c.cmd("imap", "a3 NOOP") == b"a3 OK NOOP completed by recorder.\r\n"
        assert c.cmd("imap", "a4 LOGOUT").endswith(b"a4 OK Logout completed by recorder.\r\n")
        assert_session_closed(c, me, tls="no")
    me.wait_for_log(PLAIN_LINE.format(port=c.local_port))
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].received() == b"a1 LOGIN user pass\r\na3 NOOP\r\na4 LOGOUT\r\n"


def test_may_pop3_plaintext_relay(recording_edge):
    me, rec = recording_edge.me, recording_edge.recorders["pop3"]
    mark = rec.mark()
    with LineClient(recording_edge.ports["pop3-may"]) as c:
        greet(c, "pop3")
        assert c.cmd("pop3", "USER someone") == b"+OK recorder USER\r\n"
        assert c.cmd("pop3", "STLS") == b"-ERR STLS not available on this connection.\r\n"
        assert c.cmd("pop3", "PASS secret") == b"+OK recorder logged in\r\n"
        assert c.cmd("pop3", "QUIT") == b"+OK recorder bye\r\n"
        assert_session_closed(c, me, tls="no")
    me.wait_for_log(PLAIN_LINE.format(port=c.local_port))
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].received() == b"USER someone\r\nPASS secret\r\nQUIT\r\n"


# --- 7. pre-TLS robustness, while a good session completes ----------------------------------------------

MAX_LINE = {"smtp": 1000, "imap": 8192, "pop3": 512}
TOO_LONG = {"smtp": b"500 5.5.0 Error: line too long\r\n", "imap": b"* BYE Line too long.\r\n",
            "pop3": b"-ERR Line too long.\r\n"}
NUL = {"smtp": (b"NO\x00OP\r\n", b"500 5.5.2 Error: bad syntax\r\n"),
       "imap": (b"n1 NO\x00OP\r\n", b"* BAD Error in IMAP command received by server.\r\n"),
       "pop3": (b"NO\x00OP\r\n", b"-ERR Unknown command.\r\n")}
INVALID = {"smtp": (b"FROB\r\n", SMTP_530),
           "imap": (b"x FROB\r\n", b"x " + IMAP_BAD_CMD),
           "pop3": (b"FROB\r\n", POP3_UNKNOWN)}
TOO_MANY = {"smtp": f"421 4.7.0 {H} Error: too many errors\r\n".encode(),
            "imap": b"* BYE Too many invalid IMAP commands.\r\n",
            "pop3": b"-ERR Too many invalid commands.\r\n"}
STARTTLS_ARG = {"smtp": (b"STARTTLS now\r\n", b"501 5.5.4 Syntax: STARTTLS\r\n"),
                "imap": (b"s STARTTLS now\r\n", b"s BAD STARTTLS takes no arguments.\r\n"),
                "pop3": (b"STLS now\r\n", b"-ERR STLS takes no arguments.\r\n")}
TIMEOUT = {"smtp": f"421 4.4.2 {H} Error: timeout exceeded\r\n".encode(),
           "imap": b"* BYE Disconnected for inactivity.\r\n",
           "pop3": b"-ERR Disconnected for inactivity.\r\n"}


def read_reply(c, proto, tag=b"x"):
    if proto == "smtp":
        return c.smtp_reply()
    if proto == "imap":
        return c.line()
    return c.pop3_reply()


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_line_too_long_closes(recording_edge, proto):
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    mark = rec.mark()
    with GoodSession(recording_edge, proto):
        with LineClient(recording_edge.ports[proto]) as c:
            greet(c, proto)
            c.send(b"NOOP " + b"x" * (2 * MAX_LINE[proto]) + b"\r\n")
            data = assert_session_closed(c, me)
            assert data == TOO_LONG[proto], data
            me.wait_for_log(ENDED_LINE.format(port=c.local_port,
                                              reply=re.escape(TOO_LONG[proto][:-2].decode())))
    assert_backend_untouched(rec, mark, "line too long")


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_nul_byte_is_syntax_error(recording_edge, proto):
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    mark = rec.mark()
    with GoodSession(recording_edge, proto):
        with LineClient(recording_edge.ports[proto]) as c:
            greet(c, proto)
            line, reply = NUL[proto]
            c.send(line)
            assert read_reply(c, proto) == reply
            # The session goes on.
            if proto == "smtp":
                assert c.cmd("smtp", "NOOP") == b"250 2.0.0 Ok\r\n"
            elif proto == "imap":
                assert c.cmd("imap", "n2 NOOP") == b"n2 OK NOOP completed.\r\n"
            else:
                assert c.cmd("pop3", "CAPA", multiline=True).startswith(b"+OK")
            c.send(b"n3 LOGOUT\r\n" if proto == "imap" else b"QUIT\r\n")
            assert_session_closed(c, me)
    assert_backend_untouched(rec, mark, "NUL byte")


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_too_many_errors_closes(recording_edge, proto):
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    mark = rec.mark()
    line, reply = INVALID[proto]
    with GoodSession(recording_edge, proto):
        with LineClient(recording_edge.ports[proto]) as c:
            greet(c, proto)
            for i in range(9):
                c.send(line)
                assert read_reply(c, proto) == reply, f"invalid command #{i + 1}"
            c.send(line)
            data = assert_session_closed(c, me)
            assert data == TOO_MANY[proto], data
    assert_backend_untouched(rec, mark, "too many errors")


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_starttls_with_argument_refused(recording_edge, proto):
    me, rec = recording_edge.me, recording_edge.recorders[proto]
    mark = rec.mark()
    with GoodSession(recording_edge, proto):
        with LineClient(recording_edge.ports[proto]) as c:
            greet(c, proto)
            line, reply = STARTTLS_ARG[proto]
            c.send(line)
            assert read_reply(c, proto) == reply
            assert c.pending(0.3) == b""  # no TLS started: nothing else said
            assert_backend_untouched(rec, mark, "STARTTLS with an argument")
            # A proper STARTTLS still works afterwards.
            upgrade(c, proto, "t0")
            assert c.cmd(proto, NOOP[proto][0]) == NOOP[proto][1]
            assert c.cmd(proto, QUIT[proto][0]) == QUIT[proto][1]
            assert_session_closed(c, me, tls="yes")
    conns = rec.since(mark)
    assert len(conns) == 1, conns
    rec.wait_closed(conns)
    assert conns[0].received() == (NOOP[proto][0] + "\r\n" + QUIT[proto][0] + "\r\n").encode()


def test_dialogue_timeout(mailedge_factory, recorders):
    """dialogue_timeout = 2s: an idle pre-TLS client gets the protocol's timeout reply and
    is closed (all three protocols at once), while a good session on the same instance
    completes."""
    ports = {p: alloc_port() for p in ("smtp", "imap", "pop3")}
    sections = [("global", [("log_level", "info")])]
    for p in ports:
        sections.append((f"backend rec-{p}", [("address", recorders[p].address)]))
    for p, port in ports.items():
        sections.append(starttls_listener_section(p, p, port, f"rec-{p}",
                                                  capabilities="PIPELINING" if p == "smtp"
                                                  else "IMAP4rev1" if p == "imap" else "TOP",
                                                  dialogue_timeout="2s"))
    me = mailedge_factory(render(sections), "dialogue-timeout")
    marks = {p: recorders[p].mark() for p in ports}
    results, errors = {}, {}

    def idle(p):
        try:
            with LineClient(ports[p], timeout=30) as c:
                greet(c, p)
                data, how = c.read_until_close(timeout=30)
                results[p] = (data, how, c.local_port)
        except Exception as e:  # noqa: BLE001 - reported below
            errors[p] = e

    threads = [threading.Thread(target=idle, args=(p,), daemon=True) for p in ports]
    for t in threads:
        t.start()
    # The good session: STARTTLS IMAP through the same instance while the others idle.
    with LineClient(ports["imap"], timeout=30) as g:
        greet(g, "imap")
        upgrade(g, "imap", "g0")
        assert g.cmd("imap", "g1 NOOP") == b"g1 OK NOOP completed by recorder.\r\n"
        for t in threads:
            t.join(40)
        assert g.cmd("imap", "g2 NOOP") == b"g2 OK NOOP completed by recorder.\r\n"
        assert g.cmd("imap", "g3 LOGOUT").endswith(b"g3 OK Logout completed by recorder.\r\n")
    assert not errors, errors
    bad = {p: results.get(p) for p in ports
           if results.get(p) is None or results[p][0] != TIMEOUT[p]
           or results[p][1] not in ("eof", "reset")}
    assert not bad, f"expected {TIMEOUT}, got {bad}"
    for p in ports:
        me.wait_for_log(rf"pre-TLS dialogue with unknown\[127\.0\.0\.1\]:{results[p][2]} "
                        rf"timed out")
        me.wait_for_log(CLOSE_LINE.format(port=results[p][2], tls="no"))
        conns = recorders[p].since(marks[p])
        if p == "imap":  # only the good session
            assert len(conns) == 1, conns
            recorders[p].wait_closed(conns)
            assert conns[0].received() == b"g1 NOOP\r\ng2 NOOP\r\ng3 LOGOUT\r\n"
        else:
            assert conns == [], conns
    me.assert_alive()
