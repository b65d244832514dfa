"""Client identity (issue 4) with the real Dovecot 2.3: mailedge tells Dovecot who the
client is through a PROXY v1/v2 header (inet_listener ... haproxy = yes,
haproxy_trusted_networks), IMAP ID x-originating-* or POP3 XCLIENT
(login_trusted_networks), for implicit TLS, STARTTLS and plaintext `may` sessions.
Each client binds its own 127.0.0.x address and logs in as its own user; Dovecot's
"Login:" line must show rip=<that address>, and, with PROXY v2, "secured" exactly when
the client used TLS (Dovecot 2.3.19 prints "secured" for a v2 header whose PP2_TYPE_SSL
has PP2_CLIENT_SSL, and nothing for one without: there is no "TLS" word for proxied
sessions), and local_name=<SNI> from PP2_TYPE_AUTHORITY.

Instances (conftest): dovecot_haproxy (DIR/dovecot-haproxy) and dovecot_trusted
(DIR/dovecot-trusted); mailedge: ident_edge, listeners MODE-IDENT (imaps-proxy-v2,
imap-imap-id, pop3-may-xclient, ...)."""

import re

import pytest

from harness.configs import listener_section
from harness.identity import IMAP, IMAPS, POP3, POP3S, client_addr, open_socket
from harness.mailedge import render
from harness.messages import make_message
from harness.ports import alloc_port
from harness.tlsutil import HOST, client_context, read_line

pytestmark = pytest.mark.mailedge

INSTANCE = {"none": "dovecot_haproxy", "proxy-v1": "dovecot_haproxy",
            "proxy-v2": "dovecot_haproxy", "imap-id": "dovecot_trusted",
            "xclient": "dovecot_trusted"}
MODE_TLS = {"imaps": True, "imap": True, "imap-may": False,
            "pop3s": True, "pop3": True, "pop3-may": False}


def imap_session(port, mode, source, user, expected=None, sni=None, before_login=()):
    """LOGIN (after STARTTLS on `imap`), SELECT, FETCH 1 (checked if expected), LOGOUT.
    before_login: [(name, args)] commands sent first (imaplib xatom). Returns the
    client's port."""
    if mode == "imaps":
        m = IMAPS(port, source=source, sni=sni)
    else:
        m = IMAP(port, source=source)
        if mode == "imap":
            typ, _ = m.starttls(ssl_context=client_context())
            assert typ == "OK"
    cport = m.sock.getsockname()[1]
    try:
        for name, args in before_login:
            typ, data = m.xatom(name, args)
            assert typ == "OK", (name, typ, data)
        typ, _ = m.login(user, "test")
        assert typ == "OK"
        typ, _ = m.select("INBOX")
        assert typ == "OK"
        if expected is not None:
            typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
            assert typ == "OK" and data[0][1] == expected, data
    finally:
        m.logout()
    return cport


def pop3_session(port, mode, source, user, expected=None, sni=None, before_login=()):
    if mode == "pop3s":
        p = POP3S(port, source=source, sni=sni)
    else:
        p = POP3(port, source=source)
        if mode == "pop3":
            p.stls(context=client_context())
    cport = p.sock.getsockname()[1]
    try:
        for line in before_login:
            p._shortcmd(line)
        p.user(user)
        p.pass_("test")
        if expected is not None:
            _resp, lines, _ = p.retr(1)
            assert b"\r\n".join(lines) + b"\r\n" == expected
    finally:
        p.quit()
    return cport


def login_line(dc, service, user):
    m = dc.wait_for_log(rf"{service}-login: Info: Login: user=<{user}>, [^\n]*")
    return m.group(0)


def fresh_user(dc):
    user = dc.add_user()
    _tok, msg = make_message(to=f"{user}@example.test")
    dc.place_message(user, msg)
    return user, msg


# --- PROXY v2 / v1 / none -----------------------------------------------------------------

@pytest.mark.parametrize("mode,ident", [
    (m, i) for i in ("proxy-v2", "proxy-v1", "none")
    for m in ("imaps", "imap", "imap-may", "pop3s", "pop3", "pop3-may")
    if not (m.startswith("pop3") and i == "proxy-v1")])  # (IMAP covers v1)
def test_dovecot_sees_client(request, ident_edge, mode, ident):
    proto = mode[:4]
    dc = request.getfixturevalue(INSTANCE[ident])
    src = client_addr()
    user, msg = fresh_user(dc)
    session = imap_session if proto == "imap" else pop3_session
    cport = session(ident_edge.ports[f"{mode}-{ident}"], mode, src, user, expected=msg)
    line = login_line(dc, proto, user)
    fields = [f.strip() for f in line.split(",")]
    if ident == "none":
        # A legacy backend sees mailedge (and loopback rip == lip makes it "secured").
        assert "rip=127.0.0.1" in fields, line
        assert f"rip={src}," not in dc.log_text()
        return
    assert f"rip={src}" in fields and f"rport={cport}" in fields, line
    assert "lip=127.0.0.1" in fields, line  # where the client connected (mailedge)
    if ident == "proxy-v2" and MODE_TLS[mode]:
        assert "secured" in fields, f"TLS session not signalled through PROXY v2: {line}"
    else:
        # v2 for a plaintext `may` session carries no SSL TLV; v1 cannot carry one.
        assert "secured" not in fields, f"plaintext session shown as secured: {line}"


@pytest.mark.parametrize("proto", ["imap", "pop3"])
def test_proxy_v2_carries_sni(ident_edge, dovecot_haproxy, proto):
    """PP2_TYPE_AUTHORITY: Dovecot's %{local_name} is the name the client asked for."""
    src = client_addr()
    user, _msg = fresh_user(dovecot_haproxy)
    session = imap_session if proto == "imap" else pop3_session
    session(ident_edge.ports[f"{proto}s-proxy-v2"], f"{proto}s", src, user,
            sni="mail.example.test")
    line = login_line(dovecot_haproxy, proto, user)
    assert f"rip={src}," in line and "local_name=<mail.example.test>" in line, line
    # Without SNI (the client connected by IP address): no authority, and Dovecot
    # leaves an empty element out of the line.
    user2, _ = fresh_user(dovecot_haproxy)
    session(ident_edge.ports[f"{proto}s-proxy-v2"], f"{proto}s", client_addr(), user2)
    assert "local_name=" not in login_line(dovecot_haproxy, proto, user2)


# --- IMAP ID / POP3 XCLIENT ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["imaps", "imap", "imap-may", "pop3s", "pop3", "pop3-may"])
def test_dovecot_trusted_sees_client(ident_edge, dovecot_trusted, mode):
    proto = mode[:4]
    ident = "imap-id" if proto == "imap" else "xclient"
    src = client_addr()
    user, msg = fresh_user(dovecot_trusted)
    session = imap_session if proto == "imap" else pop3_session
    cport = session(ident_edge.ports[f"{mode}-{ident}"], mode, src, user, expected=msg)
    line = login_line(dovecot_trusted, proto, user)
    assert f"rip={src}, rport={cport}," in line, line


def _raw_imap(port, mode, source, user):
    """A raw IMAP session; returns every byte the client received (TLS decrypted)."""
    s = open_socket(port, source)
    got = b""
    try:
        if mode == "imaps":
            s = client_context().wrap_socket(s, server_hostname=HOST)
        got += read_line(s)
        if mode == "imap":
            s.sendall(b"s STARTTLS\r\n")
            got += read_line(s)
            s = client_context().wrap_socket(s, server_hostname=HOST)
        for tag, cmd in ((b"a", b"CAPABILITY"), (b"b", b"LOGIN " + user.encode() + b" test"),
                         (b"c", b"LOGOUT")):
            s.sendall(tag + b" " + cmd + b"\r\n")
            while True:
                line = read_line(s)
                got += line
                if line.startswith(tag + b" "):
                    break
    finally:
        s.close()
    return got


@pytest.mark.parametrize("mode", ["imaps", "imap", "imap-may"])
def test_imap_id_reply_never_reaches_client(ident_edge, dovecot_trusted, mode):
    src = client_addr()
    user, _ = fresh_user(dovecot_trusted)
    got = _raw_imap(ident_edge.ports[f"{mode}-imap-id"], mode, src, user)
    assert b"* ID" not in got and b"ID completed" not in got, got
    # One greeting: Dovecot's on implicit TLS, mailedge's before STARTTLS.
    assert got.count(b"* OK") == 1, got
    assert re.search(rb"^a OK ", got, re.M) and re.search(rb"^b OK ", got, re.M), got
    assert f"rip={src}," in login_line(dovecot_trusted, "imap", user)


def _raw_pop3(port, mode, source, user, extra=()):
    s = open_socket(port, source)
    got = b""
    try:
        if mode == "pop3s":
            s = client_context().wrap_socket(s, server_hostname=HOST)
        got += read_line(s)
        if mode == "pop3":
            s.sendall(b"STLS\r\n")
            got += read_line(s)
            s = client_context().wrap_socket(s, server_hostname=HOST)
        for cmd in list(extra) + [b"USER " + user.encode(), b"PASS test", b"QUIT"]:
            s.sendall(cmd + b"\r\n")
            got += read_line(s)
    finally:
        s.close()
    return got


@pytest.mark.parametrize("mode", ["pop3s", "pop3", "pop3-may"])
def test_pop3_xclient_reply_never_reaches_client(ident_edge, dovecot_trusted, mode):
    src = client_addr()
    user, _ = fresh_user(dovecot_trusted)
    got = _raw_pop3(ident_edge.ports[f"{mode}-xclient"], mode, src, user)
    assert b"Updated" not in got and b"trusted IP" not in got, got
    # Dovecot offers XCLIENT to mailedge in its greeting; clients never see the offer.
    assert b"XCLIENT" not in got, got
    lines = got.split(b"\r\n")
    assert lines[-2] == b"+OK Logging out.", got
    assert b"+OK Logged in." in lines, got
    assert f"rip={src}," in login_line(dovecot_trusted, "pop3", user)


# --- a client cannot claim another address -------------------------------------------------------

@pytest.mark.parametrize("mode", ["imaps", "imap-may"])
def test_imap_client_id_cannot_override_address(ident_edge, dovecot_trusted, mode):
    """Dovecot believes ID x-originating-ip from mailedge's address: a client's own ID
    (after mailedge's) must not change what Dovecot logs."""
    src = client_addr()
    user, _ = fresh_user(dovecot_trusted)
    spoof = ("ID", '("x-originating-ip" "198.51.100.66" "x-originating-port" "666")')
    imap_session(ident_edge.ports[f"{mode}-imap-id"], mode, src, user,
                 before_login=[spoof])
    line = login_line(dovecot_trusted, "imap", user)
    assert f"rip={src}," in line and "198.51.100.66" not in line, line


@pytest.mark.parametrize("mode", ["pop3s", "pop3-may"])
@pytest.mark.parametrize("verb", [b"XCLIENT ADDR=198.51.100.67 PORT=667", b"XOIP 198.51.100.67",
                                  b"xclient addr=198.51.100.67"])
def test_pop3_client_xclient_refused(ident_edge, dovecot_trusted, mode, verb):
    """Dovecot believes POP3 XCLIENT from mailedge's address, and a second XCLIENT
    overrides the first: a client's XCLIENT (or Zimbra's XOIP) must never reach it."""
    src = client_addr()
    user, _ = fresh_user(dovecot_trusted)
    got = _raw_pop3(ident_edge.ports[f"{mode}-xclient"], mode, src, user, extra=[verb])
    first_reply = got.split(b"\r\n")[1]
    assert first_reply.startswith(b"-ERR"), got
    line = login_line(dovecot_trusted, "pop3", user)
    assert f"rip={src}," in line and "198.51.100.67" not in line, line


# --- the probe --------------------------------------------------------------------------------

@pytest.mark.parametrize("listener,backend", [
    ("imap-proxy-v2", "imap-proxy-v2"), ("imap-may-proxy-v1", "imap-proxy-v1"),
    ("pop3-proxy-v2", "pop3-proxy-v2"), ("imap-imap-id", "imap-imap-id"),
    ("pop3-may-xclient", "pop3-xclient")])
def test_probe_learns_dovecot_capabilities(ident_edge, listener, backend):
    assert ident_edge.me.log_lines(rf"capability probe of \[backend {backend}\] failed") == []
    lines = ident_edge.me.log_lines(
        rf"\[listener {listener}\]: backend \[backend {backend}\] capabilities: ")
    assert lines and ("IMAP4rev1" in lines[0] or "UIDL" in lines[0]), lines


def test_no_dovecot_errors(ident_edge, dovecot_haproxy, dovecot_trusted):
    """Dovecot logged no error or warning for any header/ID/XCLIENT mailedge sent."""
    for dc in (dovecot_haproxy, dovecot_trusted):
        bad = [l for l in dc.log_text().splitlines()
               if re.search(r"\b(Error|Warning|Fatal|Panic):", l)]
        assert bad == [], bad


# --- a backend that does not trust mailedge -------------------------------------------------------

def test_pop3_xclient_untrusted_backend_fails_closed(mailedge_factory, dovecot_haproxy):
    """POP3 XCLIENT to a Dovecot that does not list mailedge in login_trusted_networks:
    Dovecot answers "+OK You are not from trusted IP - ignoring" and would log every
    client as mailedge; mailedge refuses the session (temporary failure) and says why."""
    port = alloc_port()
    me = mailedge_factory(render([
        ("global", [("log_level", "info")]),
        ("backend untrusted", [("address", f"127.0.0.1:{dovecot_haproxy.ports['pop3']}"),
                               ("client_identity", "xclient")]),
        listener_section("pop3s", "pop3", port, "untrusted", "rsa")]), "pop3-untrusted")
    src = client_addr()
    s = client_context().wrap_socket(open_socket(port, src), server_hostname=HOST)
    try:
        got = b""
        while True:
            try:
                d = s.recv(4096)
            except (OSError, ConnectionError):
                break
            if not d:
                break
            got += d
    finally:
        s.close()
    assert got.startswith(b"-ERR"), got
    assert b"trusted IP" not in got, got
    me.wait_for_log(r"backend refused the session for unknown\[%s\]:\d+: .*trusted IP"
                    % re.escape(src))
