"""Client identity (issue 4), byte for byte, against the recording backends
(harness/recorder.py): the PROXY v1/v2 header mailedge writes is the very first thing
on the backend connection and arrives in one read, its addresses are the client's, v2
carries PP2_TYPE_SSL (PP2_CLIENT_SSL, verify, SSL_VERSION, SSL_CIPHER; no CN without a
verified client certificate) for every TLS session, STARTTLS ones included, and
PP2_TYPE_AUTHORITY with the SNI name, and plaintext `may` sessions carry neither. The
XCLIENT (SMTP, POP3) and IMAP ID commands carry the client's address and port, and
their replies never reach the client. v2 is parsed per HAProxy's proxy-protocol.txt
(harness/identity.py parse_header)."""

import re
import ssl

import pytest

from harness import identity
from harness.identity import client_addr, open_socket, parse_header
from harness.tlsutil import HOST, client_context, read_line

pytestmark = pytest.mark.mailedge

HELO = b"client.example.test"
MODES = ("implicit", "starttls", "may")


class Session:
    """A raw client session through mailedge: what it received, its port, its TLS."""

    def __init__(self, port, source, sni=None, ctx=None):
        self.sock = open_socket(port, source)
        self.cport = self.sock.getsockname()[1]
        self.port = port
        self.sni, self.ctx = sni, ctx
        self.got = b""
        self.tls = None

    def wrap(self):
        ctx = self.ctx or client_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.sni or HOST)
        self.tls = (self.sock.version(), self.sock.cipher()[0])

    def line(self):
        line = read_line(self.sock)
        self.got += line
        return line

    def send(self, data):
        self.sock.sendall(data)

    def smtp_reply(self):
        out = b""
        while True:
            line = self.line()
            out += line
            if line[3:4] != b"-":
                return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def run_session(proto, mode, port, source, sni=None, ctx=None):
    """A minimal session: implicit TLS / STARTTLS / plaintext on `may` (one command that
    mailedge hands to the backend), then a command the backend answers, then quit."""
    s = Session(port, source, sni, ctx)
    try:
        if mode == "implicit":
            s.wrap()
        if proto == "smtp":
            s.smtp_reply()
            if mode != "implicit":
                s.send(b"EHLO " + HELO + b"\r\n")
                s.smtp_reply()
                if mode == "starttls":
                    s.send(b"STARTTLS\r\n")
                    assert s.smtp_reply().startswith(b"220 ")
                    s.wrap()
            if mode != "may":
                s.send(b"EHLO " + HELO + b"\r\n")
                assert b"recorder.example.test" in s.smtp_reply()
            s.send(b"MAIL FROM:<a@example.test>\r\n")
            assert b"recorder MAIL ok" in s.smtp_reply()
            s.send(b"QUIT\r\n")
            s.smtp_reply()
        elif proto == "imap":
            s.line()
            if mode == "starttls":
                s.send(b"s STARTTLS\r\n")
                assert s.line().startswith(b"s OK")
                s.wrap()
            # LOGIN goes to the backend on `may` (and after TLS, everywhere).
            s.send(b"a LOGIN u p\r\n")
            assert s.line().startswith(b"a OK ")
            s.send(b"b NOOP\r\n")
            assert s.line() == b"b OK NOOP completed by recorder.\r\n"
            s.send(b"c LOGOUT\r\n")
            while not s.line().startswith(b"c "):
                pass
        else:
            s.line()
            if mode == "starttls":
                s.send(b"STLS\r\n")
                assert s.line().startswith(b"+OK")
                s.wrap()
            s.send(b"USER u\r\n")
            assert s.line() == b"+OK recorder USER\r\n"
            s.send(b"NOOP\r\n")
            assert s.line() == b"+OK recorder NOOP\r\n"
            s.send(b"QUIT\r\n")
            s.line()
    finally:
        s.close()
    return s


def backend_conn(rec, mark, match):
    """The connection accepted since mark for which match(conn) holds (probes may
    connect too), once it is closed."""
    conns = rec.wait_connections(mark)
    rec.wait_closed(conns)
    mine = [c for c in rec.since(mark) if match(c)]
    assert len(mine) == 1, rec.since(mark)
    return mine[0]


def header_src(conn):
    """The source address in conn's PROXY header (None: no header, or unparsable)."""
    try:
        return parse_header(conn.proxy_header).src if conn.proxy_header else None
    except AssertionError:
        return None


def client_commands(proto, mode):
    """What the client's session above sends to the backend, in order (after the
    identity preamble and, on `may`, mailedge's replay)."""
    if proto == "smtp":
        first = [] if mode == "may" else [b"EHLO " + HELO]
        return first + [b"MAIL FROM:<a@example.test>", b"QUIT"]
    if proto == "imap":
        return [b"a LOGIN u p", b"b NOOP", b"c LOGOUT"]
    return [b"USER u", b"NOOP", b"QUIT"]


# --- PROXY v1 / v2 ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
@pytest.mark.parametrize("version", [1, 2])
def test_proxy_header_first_and_whole(identity_recording_edge, version, proto, mode):
    edge = identity_recording_edge
    rec = edge.recorders[(proto, f"proxy-v{version}")]
    port = edge.ports[f"{proto}-{mode}-proxy-v{version}"]
    src = client_addr()
    mark = rec.mark()
    s = run_session(proto, mode, port, src)
    conn = backend_conn(rec, mark, lambda c: header_src(c) == src)
    hdr_bytes = conn.proxy_header
    # The header is the first thing on the connection, written in one piece.
    assert conn.received().startswith(hdr_bytes)
    assert conn.first_read == hdr_bytes, (conn.first_read, hdr_bytes)
    h = parse_header(hdr_bytes)
    assert (h.version, h.command) == (version, "PROXY"), h
    assert (h.src, h.sport, h.dst, h.dport) == (src, s.cport, "127.0.0.1", port), h
    if version == 1:
        assert hdr_bytes == f"PROXY TCP4 {src} 127.0.0.1 {s.cport} {port}\r\n".encode()
    else:
        assert h.family == 0x11  # TCP over IPv4
        assert {t for t, _ in h.tlvs} <= {identity.PP2_TYPE_SSL}, h.tlvs
        if mode == "may":
            assert h.ssl is None, f"plaintext session with an SSL TLV: {h}"
        else:
            assert h.ssl is not None, f"TLS session ({mode}) without PP2_TYPE_SSL: {h}"
            # No client certificate: PP2_CLIENT_SSL only, verify non-zero, no CN.
            assert h.ssl["client"] == identity.PP2_CLIENT_SSL, h.ssl
            assert h.ssl["verify"] != 0, h.ssl
            assert h.ssl_sub(identity.PP2_SUBTYPE_SSL_CN) is None, h.ssl
            assert h.ssl_sub(identity.PP2_SUBTYPE_SSL_VERSION) == s.tls[0].encode(), h.ssl
            assert h.ssl_sub(identity.PP2_SUBTYPE_SSL_CIPHER) == s.tls[1].encode(), h.ssl
            assert {t for t, _ in h.ssl["subs"]} <= {
                identity.PP2_SUBTYPE_SSL_VERSION, identity.PP2_SUBTYPE_SSL_CIPHER,
                identity.PP2_SUBTYPE_SSL_SIG_ALG, identity.PP2_SUBTYPE_SSL_KEY_ALG}, h.ssl
        assert h.tlv(identity.PP2_TYPE_AUTHORITY) is None  # no SNI (connected by IP)
    # After the header: exactly the client's commands (mailedge's replay on `may`).
    expected = client_commands(proto, mode)
    if proto == "smtp" and mode == "may":
        expected = [b"EHLO " + HELO] + expected
    assert conn.commands == expected, conn.commands


@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_proxy_v2_authority_is_sni(identity_recording_edge, proto):
    edge = identity_recording_edge
    rec = edge.recorders[(proto, "proxy-v2")]
    src = client_addr()
    mark = rec.mark()
    run_session(proto, "implicit", edge.ports[f"{proto}-implicit-proxy-v2"], src,
                sni="mail.example.test")
    conn = backend_conn(rec, mark, lambda c: header_src(c) == src)
    h = parse_header(conn.proxy_header)
    assert h.tlv(identity.PP2_TYPE_AUTHORITY) == b"mail.example.test", h


def test_proxy_v2_tls12_cipher_name(identity_recording_edge):
    """TLS 1.2: SSL_VERSION "TLSv1.2" and the cipher by its OpenSSL name, as the client
    (Python/OpenSSL) names it."""
    edge = identity_recording_edge
    rec = edge.recorders[("imap", "proxy-v2")]
    src = client_addr()
    ctx = client_context(max_version=ssl.TLSVersion.TLSv1_2)
    mark = rec.mark()
    s = run_session("imap", "starttls", edge.ports["imap-starttls-proxy-v2"], src, ctx=ctx)
    conn = backend_conn(rec, mark, lambda c: header_src(c) == src)
    h = parse_header(conn.proxy_header)
    assert s.tls[0] == "TLSv1.2"
    assert h.ssl_sub(identity.PP2_SUBTYPE_SSL_VERSION) == b"TLSv1.2", h
    assert h.ssl_sub(identity.PP2_SUBTYPE_SSL_CIPHER) == s.tls[1].encode(), (h, s.tls)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("proto", ["smtp", "imap", "pop3"])
def test_probe_sends_proxy_header(identity_recording_edge, proto, version):
    """The capability probe's connections carry a header too (v2: LOCAL; v1: a line
    real backends accept -- Postfix 3.7 refuses "PROXY UNKNOWN", see
    test_identity_postfix.py), and the probe learned the recorder's capabilities."""
    edge = identity_recording_edge
    for mode in ("starttls", "may"):
        assert edge.me.log_lines(
            rf"\[listener {proto}-{mode}-proxy-v{version}\]: backend "
            rf"\[backend rec-{proto}-proxy-v{version}\] capabilities: "), mode
    probes = edge.probes[(proto, f"proxy-v{version}")]
    assert len(probes) >= 2, probes  # one per STARTTLS listener
    for c in probes:
        assert c.proxy_header is not None, c
        assert c.first_read == c.proxy_header, c
        h = parse_header(c.proxy_header)
        assert h.ssl is None and h.tlvs == [], h
        if h.command == "PROXY":  # then with mailedge's own addresses
            assert (h.src, h.dst) == ("127.0.0.1", "127.0.0.1"), h


# --- XCLIENT (SMTP) --------------------------------------------------------------------------

def xclient_attrs(cmd):
    assert cmd.startswith(b"XCLIENT "), cmd
    return dict(a.split(b"=", 1) for a in cmd.split()[1:])


@pytest.mark.parametrize("mode", MODES)
def test_smtp_xclient(identity_recording_edge, mode):
    edge = identity_recording_edge
    rec = edge.recorders[("smtp", "xclient")]
    src = client_addr()
    mark = rec.mark()
    s = run_session("smtp", mode, edge.ports[f"smtp-{mode}-xclient"], src)
    conn = backend_conn(rec, mark, lambda c: any(
        cmd.startswith(b"XCLIENT ") and b"ADDR=" + src.encode() + b" " in cmd + b" "
        for cmd in c.commands))
    cmds = conn.commands
    # mailedge's own EHLO (does the backend offer XCLIENT?), then XCLIENT.
    assert cmds[0].startswith(b"EHLO ") and cmds[0] != b"EHLO " + HELO, cmds
    attrs = xclient_attrs(cmds[1])
    assert attrs[b"ADDR"] == src.encode() and attrs[b"PORT"] == str(s.cport).encode(), attrs
    assert attrs[b"NAME"] == b"[UNAVAILABLE]", attrs
    if mode == "may":
        # The client's EHLO is known: HELO and PROTO too, then the EHLO is replayed.
        assert attrs[b"HELO"] == HELO and attrs[b"PROTO"] == b"ESMTP", attrs
        assert cmds[2:] == [b"EHLO " + HELO] + client_commands("smtp", mode), cmds
    else:
        assert b"HELO" not in attrs and b"PROTO" not in attrs, attrs
        assert cmds[2:] == client_commands("smtp", mode), cmds
    # The client saw one greeting, no reply to mailedge's EHLO or to XCLIENT.
    greetings = [l for l in s.got.split(b"\r\n") if re.match(rb"220[ -]", l)]
    assert len([g for g in greetings if b"ESMTP" in g]) == 1, s.got
    assert s.got.count(b"250-recorder.example.test") <= 1, s.got
    assert b"XCLIENT" not in s.got, s.got


# --- IMAP ID ------------------------------------------------------------------------------------

def id_fields(cmd):
    m = re.match(rb"^(\S+) ID \((.*)\)$", cmd)
    assert m, cmd
    items = re.findall(rb'"((?:[^"\\]|\\.)*)"|NIL', m.group(2))
    assert len(items) % 2 == 0, cmd
    return dict(zip(items[0::2], items[1::2]))


@pytest.mark.parametrize("mode", MODES)
def test_imap_id(identity_recording_edge, mode):
    edge = identity_recording_edge
    rec = edge.recorders[("imap", "imap-id")]
    port = edge.ports[f"imap-{mode}-imap-id"]
    src = client_addr()
    mark = rec.mark()
    s = run_session("imap", mode, port, src)
    conn = backend_conn(rec, mark, lambda c: any(
        b' ID (' in cmd and b'"' + src.encode() + b'"' in cmd for cmd in c.commands))
    fields = id_fields(conn.commands[0])
    assert fields[b"x-originating-ip"] == src.encode(), fields
    assert fields[b"x-originating-port"] == str(s.cport).encode(), fields
    assert fields[b"x-connected-ip"] == b"127.0.0.1", fields
    assert fields[b"x-connected-port"] == str(port).encode(), fields
    assert conn.commands[1:] == client_commands("imap", mode), conn.commands
    assert b"* ID" not in s.got and b"ID completed" not in s.got, s.got
    assert s.got.count(b"* OK") == 1, s.got


# --- POP3 XCLIENT -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_pop3_xclient(identity_recording_edge, mode):
    edge = identity_recording_edge
    rec = edge.recorders[("pop3", "xclient")]
    src = client_addr()
    mark = rec.mark()
    s = run_session("pop3", mode, edge.ports[f"pop3-{mode}-xclient"], src)
    conn = backend_conn(rec, mark, lambda c: any(
        cmd.startswith(b"XCLIENT ") and b"ADDR=" + src.encode() + b" " in cmd + b" "
        for cmd in c.commands))
    assert conn.commands[0] == f"XCLIENT ADDR={src} PORT={s.cport}".encode(), conn.commands
    assert conn.commands[1:] == client_commands("pop3", mode), conn.commands
    assert b"Updated" not in s.got and b"XCLIENT" not in s.got, s.got
    # One greeting line; on implicit TLS it is the backend's own.
    greetings = [l for l in s.got.split(b"\r\n") if l.startswith(b"+OK") and b"ready" in l]
    assert len(greetings) == 1, s.got


@pytest.mark.parametrize("verb,name,xtext", [
    (b"HELO", b"client.example.test", b"client.example.test"),
    (b"EHLO", b"a+b=c.example.test", b"a+2Bb+3Dc.example.test")])
def test_smtp_xclient_helo_attributes(identity_recording_edge, verb, name, xtext):
    """Plaintext `may`: HELO= is the client's name in xtext (RFC 3461: "+" and "="
    escaped), PROTO= is SMTP after HELO and ESMTP after EHLO; then the client's own
    greeting command is replayed as it was."""
    edge = identity_recording_edge
    rec = edge.recorders[("smtp", "xclient")]
    src = client_addr()
    mark = rec.mark()
    s = Session(edge.ports["smtp-may-xclient"], src)
    try:
        s.smtp_reply()
        s.send(verb + b" " + name + b"\r\n")
        assert s.smtp_reply().startswith(b"250")
        s.send(b"MAIL FROM:<a@example.test>\r\n")
        assert b"recorder MAIL ok" in s.smtp_reply()
        s.send(b"QUIT\r\n")
        s.smtp_reply()
    finally:
        s.close()
    conn = backend_conn(rec, mark, lambda c: any(
        cmd.startswith(b"XCLIENT ") and b"ADDR=" + src.encode() + b" " in cmd + b" "
        for cmd in c.commands))
    attrs = xclient_attrs(conn.commands[1])
    assert attrs[b"HELO"] == xtext, attrs
    assert attrs[b"PROTO"] == (b"ESMTP" if verb == b"EHLO" else b"SMTP"), attrs
    assert conn.commands[2] == verb + b" " + name, conn.commands
