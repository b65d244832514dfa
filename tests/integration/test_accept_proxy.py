"""A load balancer in front of mailedge (issue 4, `accept_proxy`): the test plays an L4
balancer on 127.0.0.1 that writes a PROXY v1/v2 header saying the client is
203.0.113.x (TEST-NET-3: only ever written inside a header, never connected to), then
does TLS / STARTTLS over the same socket. mailedge must use that address everywhere:
its own log lines (unknown[203.0.113.x]:51234) and what it tells Postfix (XCLIENT,
PROXY v2) and Dovecot (PROXY v2, IMAP ID, POP3 XCLIENT).

Bad headers (truncated then closed, truncated then silent past proxy_timeout, no
signature, oversized, malformed, from a peer outside accept_proxy) are refused with a
logged reason while a good session through the same mailedge completes, and mailedge
stays up. Fixture: lb_edge (conftest)."""

import contextlib
import socket
import ssl
import struct
import time

import pytest

from harness import identity
from harness.identity import (IMAP, IMAPS, POP3, POP3S, SMTP, SMTPS, V2_SIG, client_addr,
                              lb_client_addr, open_socket, parse_header, tlv, v1_header,
                              v2_header, v2_local)
from harness.messages import make_message
from harness.tlsutil import HOST, client_context, python_client_hello, read_until_close

pytestmark = pytest.mark.mailedge

SPORT = 51234
CLOSE_BOUND = 20
HELO = "client.example.test"


def refused_line(port, reason):
    return rf"PROXY header from unknown\[127\.0\.0\.1\]:{port} refused: .*(?i:{reason})"


def closed_line(port):
    return rf"disconnect from unknown\[127\.0\.0\.1\]:{port} reason=proxy-header-refused "


def fresh_user(dc):
    user = dc.add_user()
    _tok, msg = make_message(to=f"{user}@example.test")
    dc.place_message(user, msg)
    return user, msg


def header_for(version, src, dst, dport, sport=SPORT):
    return v1_header(src, dst, sport, dport) if version == 1 else \
        v2_header(src, dst, sport, dport)


def assert_edge_names(me, src, sport=SPORT):
    """mailedge's own lines name the balancer's client, not the balancer."""
    me.wait_for_log(rf"client unknown\[{src}\]:{sport} via load balancer "
                    rf"unknown\[127\.0\.0\.1\]:\d+")
    me.wait_for_log(rf"disconnect from unknown\[{src}\]:{sport} reason=\S+ tls=yes")


# --- the balancer's client reaches the backends ------------------------------------------------

@pytest.mark.parametrize("version", [1, 2])
def test_lb_smtps_xclient(lb_edge, postfix_ident, version):
    src = lb_client_addr()
    tok, msg = make_message(subject="behind a load balancer")
    c = SMTPS(lb_edge.ports["lb-smtps-xclient"],
              header=header_for(version, src, "127.0.0.1", 465))
    try:
        assert c.ehlo(HELO)[0] == 250
        assert c.sendmail("sender@example.test", ["test@example.test"], msg) == {}
    finally:
        c.quit()
    postfix_ident.wait_for_message(f"<{tok}@example.test>")
    qid = postfix_ident.wait_for_log(rf"(\w+): message-id=<{tok}@example\.test>").group(1)
    postfix_ident.wait_for_log(rf"postfix-ident/xclient/smtpd\[\d+\]: {qid}: "
                               rf"client=unknown\[{src}\]:{SPORT}\n")
    assert_edge_names(lb_edge.me, src)


def test_lb_submission_starttls_proxy_v2(lb_edge, postfix_ident):
    src = lb_client_addr()
    tok, msg = make_message(subject="behind a load balancer, STARTTLS")
    c = SMTP(lb_edge.ports["lb-sub-proxy-v2"], header=v2_header(src, "127.0.0.1", SPORT, 587))
    try:
        assert c.ehlo(HELO)[0] == 250
        assert c.starttls(context=client_context())[0] == 220
        assert c.ehlo(HELO)[0] == 250
        assert c.sendmail("sender@example.test", ["test@example.test"], msg) == {}
    finally:
        c.quit()
    postfix_ident.wait_for_message(f"<{tok}@example.test>")
    postfix_ident.wait_for_log(rf"postfix-ident/haproxy/smtpd\[\d+\]: connect from "
                               rf"unknown\[{src}\]:{SPORT}\n")
    assert_edge_names(lb_edge.me, src)


def test_lb_mx_plaintext_xclient(lb_edge, postfix_ident):
    src = lb_client_addr()
    tok, msg = make_message(subject="behind a load balancer, plaintext")
    c = SMTP(lb_edge.ports["lb-mx-xclient"], header=v1_header(src, "127.0.0.1", SPORT, 25))
    try:
        assert c.ehlo(HELO)[0] == 250
        assert c.sendmail("sender@example.test", ["test@example.test"], msg) == {}
    finally:
        c.quit()
    delivered = postfix_ident.wait_for_message(f"<{tok}@example.test>")
    assert f"from {HELO} (unknown [{src}])".encode() in delivered
    lb_edge.me.wait_for_log(rf"disconnect from unknown\[{src}\]:{SPORT} reason=\S+ tls=no")


@pytest.mark.parametrize("version", [1, 2])
def test_lb_imaps_proxy_v2(lb_edge, dovecot_haproxy, version):
    src = lb_client_addr()
    user, msg = fresh_user(dovecot_haproxy)
    # The balancer's "destination" is passed on too: Dovecot's lip.
    m = IMAPS(lb_edge.ports["lb-imaps-proxy-v2"],
              header=header_for(version, src, "192.0.2.10", 993))
    try:
        assert m.login(user, "test")[0] == "OK"
        m.select("INBOX")
        typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == msg
    finally:
        m.logout()
    line = dovecot_haproxy.wait_for_log(rf"imap-login: Info: Login: user=<{user}>.*").group(0)
    assert f"rip={src}, rport={SPORT}, lip=192.0.2.10," in line, line
    assert ", secured," in line, line
    assert_edge_names(lb_edge.me, src)


def test_lb_imap_starttls_imap_id(lb_edge, dovecot_trusted):
    src = lb_client_addr()
    user, _ = fresh_user(dovecot_trusted)
    m = IMAP(lb_edge.ports["lb-imap-imap-id"], header=v2_header(src, "127.0.0.1", SPORT, 143))
    try:
        assert m.starttls(ssl_context=client_context())[0] == "OK"
        assert m.login(user, "test")[0] == "OK"
    finally:
        m.logout()
    line = dovecot_trusted.wait_for_log(rf"imap-login: Info: Login: user=<{user}>.*").group(0)
    assert f"rip={src}," in line, line
    assert_edge_names(lb_edge.me, src)


def test_lb_pop3s_xclient_and_pop3_proxy_v2(lb_edge, dovecot_trusted, dovecot_haproxy):
    src = lb_client_addr()
    user, _ = fresh_user(dovecot_trusted)
    p = POP3S(lb_edge.ports["lb-pop3s-xclient"], header=v1_header(src, "127.0.0.1", SPORT, 995))
    try:
        p.user(user)
        p.pass_("test")
    finally:
        p.quit()
    line = dovecot_trusted.wait_for_log(rf"pop3-login: Info: Login: user=<{user}>.*").group(0)
    assert f"rip={src}," in line, line
    src2 = lb_client_addr()
    user2, _ = fresh_user(dovecot_haproxy)
    p = POP3(lb_edge.ports["lb-pop3-proxy-v2"], header=v2_header(src2, "127.0.0.1", SPORT, 110))
    try:
        p.stls(context=client_context())
        p.user(user2)
        p.pass_("test")
    finally:
        p.quit()
    line = dovecot_haproxy.wait_for_log(rf"pop3-login: Info: Login: user=<{user2}>.*").group(0)
    assert f"rip={src2}," in line and ", secured," in line, line
    assert_edge_names(lb_edge.me, src)
    assert_edge_names(lb_edge.me, src2)


def test_lb_ipv6_client_in_header(lb_edge, dovecot_haproxy, postfix_ident):
    """An IPv6 client behind an IPv4 balancer: v2 TCP6 in, v2 TCP6 to Dovecot, XCLIENT
    ADDR=IPV6:... to Postfix."""
    src = "2001:db8::7"
    user, _ = fresh_user(dovecot_haproxy)
    m = IMAPS(lb_edge.ports["lb-imaps-proxy-v2"], header=v2_header(src, "2001:db8::1", SPORT, 993))
    try:
        assert m.login(user, "test")[0] == "OK"
    finally:
        m.logout()
    line = dovecot_haproxy.wait_for_log(rf"imap-login: Info: Login: user=<{user}>.*").group(0)
    assert f"rip={src}, rport={SPORT}, lip=2001:db8::1," in line, line
    lb_edge.me.wait_for_log(rf"client unknown\[{src}\]:{SPORT} via load balancer")
    tok, msg = make_message(subject="IPv6 behind a load balancer")
    c = SMTPS(lb_edge.ports["lb-smtps-xclient"], header=v1_header("2001:db8::8", "2001:db8::1",
                                                                   SPORT, 465))
    try:
        assert c.sendmail("sender@example.test", ["test@example.test"], msg) == {}
    finally:
        c.quit()
    postfix_ident.wait_for_message(f"<{tok}@example.test>")
    postfix_ident.wait_for_log(rf"client=unknown\[2001:db8::8\]:{SPORT}\n")


def test_lb_header_to_recorder(lb_edge):
    """Byte level: mailedge's v2 header to its backend has the balancer's src and dst,
    its own TLS facts (PP2_TYPE_SSL), and none of the balancer's TLVs."""
    rec = lb_edge.recorder
    src = lb_client_addr()
    lb_tlvs = (tlv(identity.PP2_TYPE_NOOP, b"\0" * 3) +
               tlv(identity.PP2_TYPE_AUTHORITY, b"lb.example.test") +
               tlv(identity.PP2_TYPE_SSL, b"\x07\0\0\0\0" + tlv(0x21, b"SSLv3")))
    mark = rec.mark()
    m = IMAPS(lb_edge.ports["lb-imaps-rec"], header=v2_header(src, "192.0.2.10", SPORT, 993,
                                                              tlvs=lb_tlvs))
    version, cipher = m.sock.version(), m.sock.cipher()[0]
    m.logout()
    conns = rec.wait_connections(mark)
    rec.wait_closed(conns)
    mine = [c for c in conns if c.proxy_header and parse_header(c.proxy_header).src == src]
    assert len(mine) == 1, conns
    h = parse_header(mine[0].proxy_header)
    assert (h.src, h.sport, h.dst, h.dport) == (src, SPORT, "192.0.2.10", 993), h
    assert h.tlv(identity.PP2_TYPE_AUTHORITY) is None, h  # no SNI from our client
    assert h.tlv(identity.PP2_TYPE_NOOP) is None, h
    assert h.ssl["client"] == identity.PP2_CLIENT_SSL, h
    assert h.ssl_sub(identity.PP2_SUBTYPE_SSL_VERSION) == version.encode(), h
    assert h.ssl_sub(identity.PP2_SUBTYPE_SSL_CIPHER) == cipher.encode(), h


@pytest.mark.parametrize("header", [v2_local(), b"PROXY UNKNOWN\r\n",
                                    b"PROXY UNKNOWN 203.0.113.9 127.0.0.1 1 2\r\n"],
                         ids=["v2-local", "v1-unknown", "v1-unknown-addresses"])
def test_lb_health_check_header(lb_edge, header):
    """LOCAL / UNKNOWN (a balancer's own connection): accepted, the session goes on
    with the balancer's own address."""
    mark = lb_edge.recorder.mark()
    m = IMAPS(lb_edge.ports["lb-imaps-rec"], header=header)
    cport = m.sock.getsockname()[1]
    m.logout()
    conns = lb_edge.recorder.wait_connections(mark)
    lb_edge.recorder.wait_closed(conns)
    mine = [parse_header(c.proxy_header) for c in conns if c.proxy_header]
    assert [(h.src, h.sport) for h in mine if h.sport == cport] == [("127.0.0.1", cport)], mine
    lb_edge.me.wait_for_log(rf"disconnect from unknown\[127\.0\.0\.1\]:{cport} reason=\S+ "
                            rf"tls=yes")


@pytest.mark.parametrize("version", [1, 2])
def test_lb_header_in_pieces(lb_edge, dovecot_haproxy, version):
    """The header arriving in several segments (v1 cut mid-word, v2 in 3-byte pieces,
    the signature split too) is put together; then implicit TLS as usual."""
    src = lb_client_addr()
    hdr = header_for(version, src, "127.0.0.1", 993)
    pieces = ([hdr[:3], hdr[3:9], hdr[9:20], hdr[20:]] if version == 1 else
              [hdr[i:i + 3] for i in range(0, len(hdr), 3)])
    user, _ = fresh_user(dovecot_haproxy)
    m = IMAPS(lb_edge.ports["lb-imaps-proxy-v2"], header=pieces)
    try:
        assert m.login(user, "test")[0] == "OK"
    finally:
        m.logout()
    line = dovecot_haproxy.wait_for_log(rf"imap-login: Info: Login: user=<{user}>.*").group(0)
    assert f"rip={src}," in line, line
    assert_edge_names(lb_edge.me, src)


def test_lb_starttls_listener_waits_for_header(lb_edge):
    """On an accept_proxy STARTTLS listener mailedge says nothing before the header,
    and takes the header and the first command in one segment."""
    s = open_socket(lb_edge.ports["lb-sub-proxy-v2"])
    try:
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
        s.settimeout(15)
        src = lb_client_addr()
        s.sendall(v2_header(src, "127.0.0.1", SPORT, 587) + b"EHLO client.example.test\r\n")
        got = b""
        while b"250 " not in got:
            d = s.recv(4096)
            assert d, got
            got += d
        assert got.startswith(b"220 edge.example.test ESMTP"), got
        s.sendall(b"QUIT\r\n")
        data, how = read_until_close(s, timeout=CLOSE_BOUND)
        assert data.startswith(b"221 "), data
    finally:
        s.close()
    lb_edge.me.wait_for_log(rf"disconnect from unknown\[{src}\]:{SPORT} reason=")


def test_lb_header_and_clienthello_in_one_segment(lb_edge, dovecot_haproxy):
    """Implicit TLS: the header and the ClientHello arrive together; mailedge must take
    exactly the header and hand the rest to the TLS handshake."""
    src = lb_client_addr()
    ctx = client_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname=HOST)
    s = open_socket(lb_edge.ports["lb-imaps-proxy-v2"])
    deadline = time.monotonic() + CLOSE_BOUND
    try:
        first = True
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pass
            data = out.read()
            if first:
                data = v2_header(src, "127.0.0.1", SPORT, 993) + data
                first = False
            if data:
                s.sendall(data)
            assert time.monotonic() < deadline, "handshake did not finish"
            d = s.recv(65536)
            assert d, "closed during the handshake"
            inc.write(d)
        s.sendall(out.read())
        greeting = b""
        while b"\r\n" not in greeting:
            try:
                greeting += tls.read(4096)
            except ssl.SSLWantReadError:
                d = s.recv(65536)
                assert d
                inc.write(d)
        assert greeting.startswith(b"* OK"), greeting
    finally:
        s.close()
    lb_edge.me.wait_for_log(rf"client unknown\[{src}\]:{SPORT} via load balancer")


# --- bad headers -------------------------------------------------------------------------------

@contextlib.contextmanager
def good_session(lb_edge, dovecot_haproxy):
    """A well-behaved IMAPS session through a load balancer, logged in before and
    finished after the misbehaviour (concurrent with it)."""
    user, msg = fresh_user(dovecot_haproxy)
    m = IMAPS(lb_edge.ports["lb-imaps-proxy-v2"],
              header=v2_header(lb_client_addr(), "127.0.0.1", SPORT, 993))
    try:
        assert m.login(user, "test")[0] == "OK"
        yield
        assert m.select("INBOX")[0] == "OK"
        typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == msg, "good session got wrong data"
    finally:
        m.logout()


def assert_refused(lb_edge, sock, reason):
    port = sock.getsockname()[1]
    data, how = read_until_close(sock, timeout=CLOSE_BOUND)
    sock.close()
    assert how in ("eof", "reset"), f"not closed ({how})"
    assert data == b"", f"mailedge answered a refused connection: {data!r}"
    lb_edge.me.wait_for_log(refused_line(port, reason))
    lb_edge.me.wait_for_log(closed_line(port))
    lb_edge.me.assert_alive()


BAD = {
    "no-signature-ehlo": (b"EHLO x\r\n", "no PROXY protocol signature"),
    "no-signature-clienthello": (None, "no PROXY protocol signature"),
    "v2-oversized": (V2_SIG + b"\x21\x11" + struct.pack("!H", 2000) + b"\0" * 2000,
                     "oversized"),
    "v1-too-long": (b"PROXY TCP4 " + b"1" * 120 + b"\r\n", "oversized|malformed"),
    "v1-missing-field": (b"PROXY TCP4 203.0.113.7 127.0.0.1 51234\r\n", "malformed"),
    "v1-bad-address": (b"PROXY TCP4 203.0.113.300 127.0.0.1 51234 465\r\n", "malformed"),
    "v1-bad-port": (b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 65536\r\n", "malformed"),
    "v2-bad-version": (V2_SIG + b"\x11\x11\x00\x0c" + b"\0" * 12, "malformed"),
    "v2-short-address-block": (V2_SIG + b"\x21\x11\x00\x04" + b"\0" * 4, "malformed"),
    "v2-bad-tlv-length": (v2_header("203.0.113.7", "127.0.0.1", 1, 2,
                                    tlvs=b"\x04\x00\x10ab"), "malformed"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_header_refused(lb_edge, dovecot_haproxy, case):
    data, reason = BAD[case]
    if data is None:
        data = python_client_hello()
    with good_session(lb_edge, dovecot_haproxy):
        s = open_socket(lb_edge.ports["lb-imaps-proxy-v2"])
        try:
            s.sendall(data)
        except OSError:
            pass  # mailedge may close before the last bytes are sent: fine
        assert_refused(lb_edge, s, reason)


@pytest.mark.parametrize("listener", ["lb-imaps-proxy-v2", "lb-sub-proxy-v2"])
def test_truncated_header_then_close(lb_edge, dovecot_haproxy, listener):
    with good_session(lb_edge, dovecot_haproxy):
        for partial in (b"PROXY TCP4 203.0.113.9 127.0.0.1 51",
                        v2_header("203.0.113.9", "127.0.0.1", 1, 2)[:20]):
            s = open_socket(lb_edge.ports[listener])
            s.sendall(partial)
            s.shutdown(socket.SHUT_WR)
            assert_refused(lb_edge, s, "closed|incomplete|truncated")


@pytest.mark.parametrize("listener", ["lb-imaps-short", "lb-sub-short"])
def test_truncated_header_then_silence(lb_edge, dovecot_haproxy, listener):
    """proxy_timeout = 2s: a half header and then nothing is dropped (bounded wait)."""
    with good_session(lb_edge, dovecot_haproxy):
        s1 = open_socket(lb_edge.ports[listener])
        s1.sendall(V2_SIG[:8])
        s2 = open_socket(lb_edge.ports[listener])  # nothing at all
        assert_refused(lb_edge, s1, "proxy_timeout|timeout|timed out")
        assert_refused(lb_edge, s2, "proxy_timeout|timeout|timed out")


def test_header_from_untrusted_peer(lb_edge, dovecot_haproxy):
    """accept_proxy = 192.0.2.0/24, the test connects from 127.0.0.x: a perfectly good
    header is refused, the backend is never asked."""
    with good_session(lb_edge, dovecot_haproxy):
        for src in ("127.0.0.1", client_addr()):
            s = open_socket(lb_edge.ports["lb-imaps-untrusted"], source=src)
            try:
                s.sendall(v1_header("203.0.113.7", "127.0.0.1", SPORT, 993))
            except OSError:
                pass  # already closed by mailedge: fine
            port = s.getsockname()[1]
            data, how = read_until_close(s, timeout=CLOSE_BOUND)
            s.close()
            assert how in ("eof", "reset") and data == b"", (data, how)
            lb_edge.me.wait_for_log(rf"PROXY header from unknown\[{src}\]:{port} refused: "
                                    r".*accept_proxy")
            lb_edge.me.wait_for_log(rf"disconnect from unknown\[{src}\]:{port} "
                                    r"reason=proxy-header-refused ")
    assert "203.0.113.7" not in dovecot_haproxy.log_text()
    lb_edge.me.assert_alive()
