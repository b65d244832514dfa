"""Misbehaving clients: each is dropped cleanly while a well-behaved IMAPS session that
spans the misbehaviour completes, and mailedge keeps running."""

import os
import random
import socket
import struct
import time

import pytest

from harness.clients import GoodImapSession, imaps_fetch
from harness.configs import backend_sections, listener_section
from harness.mailedge import render
from harness.messages import make_big_message, make_message
from harness.ports import IMAPS_PORT, POP3S_PORT, SMTPS_PORT, alloc_port
from harness.tlsutil import (HOST, SUITES, client_context, client_hello, probe_hello,
                             python_client_hello, read_line, read_until_close,
                             s_client, sslv2_client_hello)

pytestmark = pytest.mark.mailedge

CLOSE_LINE = r"disconnect from unknown\[127\.0\.0\.1\]:{port}\b.*reason="
CLOSE_BOUND = 30  # seconds we are willing to wait for mailedge to drop a bad client


@pytest.fixture
def good(dovecot):
    """(user, message) for a GoodImapSession."""
    user = dovecot.add_user()
    _tok, msg = make_message(to=f"{user}@example.test")
    dovecot.place_message(user, msg)
    return user, msg


def raw_client(port, timeout=CLOSE_BOUND):
    s = socket.create_connection((HOST, port), timeout=timeout)
    return s


def assert_dropped(sock, port, mailedge, sent_desc):
    """The server must close the TCP connection (FIN or RST) within the bound, without
    relaying anything from the backend in cleartext."""
    data, how = read_until_close(sock, timeout=CLOSE_BOUND)
    sock.close()
    assert how in ("eof", "reset"), f"after {sent_desc}: connection not closed ({how})"
    for banner in (b"220 ", b"* OK", b"+OK"):
        assert banner not in data, f"after {sent_desc}: backend greeting leaked: {data!r}"
    mailedge.wait_for_log(CLOSE_LINE.format(port=port), timeout=CLOSE_BOUND)
    mailedge.assert_alive()
    return data


@pytest.mark.parametrize("port", [SMTPS_PORT, IMAPS_PORT, POP3S_PORT],
                         ids=["smtps", "imaps", "pop3s"])
def test_plaintext_on_tls_port(mailedge, good, port):
    with GoodImapSession(IMAPS_PORT, *good):
        s = raw_client(port)
        local = s.getsockname()[1]
        s.sendall(b"EHLO x\r\n")
        data = assert_dropped(s, local, mailedge, "plaintext EHLO")
        # If anything came back it must be a TLS alert record, not text.
        assert data == b"" or data[:1] == b"\x15", data


def test_garbage_tls_record_header(mailedge, good):
    """A handshake record header announcing a huge length, then nothing sensible."""
    with GoodImapSession(IMAPS_PORT, *good):
        s = raw_client(SMTPS_PORT)
        local = s.getsockname()[1]
        s.sendall(b"\x16\x03\x01\xff\xff" + b"\x00" * 64)
        assert_dropped(s, local, mailedge, "oversized record header")


def test_empty_connection_then_close(mailedge, good):
    with GoodImapSession(IMAPS_PORT, *good):
        for _ in range(5):
            s = raw_client(IMAPS_PORT)
            s.close()
        mailedge.assert_alive()


@pytest.fixture
def short_handshake(mailedge_factory, postfix, dovecot):
    """A mailedge with handshake_timeout = 2s on an IMAPS listener."""
    port = alloc_port()
    sections = backend_sections()
    sections.append(listener_section("imaps-short", "imap", port, "imap", "ecdsa",
                                     handshake_timeout="2s"))
    me = mailedge_factory(render(sections), "short-handshake")
    return me, port


def test_random_bytes(short_handshake, good):
    """Random bytes: either rejected at once or, when they happen to look like the
    start of a record, dropped at handshake_timeout (2s here)."""
    me, port = short_handshake
    rnd = random.Random(1234)
    with GoodImapSession(port, *good):
        for size in (1, 5, 100, 4096, 65536):
            s = raw_client(port)
            local = s.getsockname()[1]
            payload = bytes(rnd.getrandbits(8) for _ in range(size))
            try:
                s.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # already dropped: fine
            assert_dropped(s, local, me, f"{size} random bytes")


def test_stall_mid_handshake(short_handshake, good):
    me, port = short_handshake
    hello = python_client_hello()
    with GoodImapSession(port, *good):
        s = raw_client(port)
        local = s.getsockname()[1]
        s.sendall(hello[:len(hello) // 2])
        data, how = read_until_close(s, timeout=CLOSE_BOUND)
        s.close()
        assert how in ("eof", "reset"), f"stalled client not dropped ({how})"
        assert b"* OK" not in data
        me.wait_for_log(CLOSE_LINE.format(port=local), timeout=CLOSE_BOUND)
    me.assert_alive()


def test_silent_client_dropped_after_handshake_timeout(short_handshake, good):
    me, port = short_handshake
    with GoodImapSession(port, *good):
        s = raw_client(port)
        local = s.getsockname()[1]
        data, how = read_until_close(s, timeout=CLOSE_BOUND)
        s.close()
        assert how in ("eof", "reset"), (how, data)
        assert data == b"" or data[:1] == b"\x15", data  # nothing, or a TLS alert
        me.wait_for_log(CLOSE_LINE.format(port=local), timeout=CLOSE_BOUND)
    me.assert_alive()


def test_many_stalled_handshakes_do_not_block_others(short_handshake, good):
    me, port = short_handshake
    hello = python_client_hello()
    stalled = []
    try:
        for _ in range(50):
            s = raw_client(port)
            s.sendall(hello[:20])
            stalled.append(s)
        # While 50 handshakes hang, a normal client still gets through.
        user, msg = good
        assert imaps_fetch(port, user) == msg
        for s in stalled:
            _data, how = read_until_close(s, timeout=CLOSE_BOUND)
            assert how in ("eof", "reset"), how
    finally:
        for s in stalled:
            s.close()
    me.assert_alive()


def test_reset_mid_handshake(mailedge, good):
    hello = python_client_hello()
    with GoodImapSession(IMAPS_PORT, *good):
        for _ in range(10):
            s = raw_client(IMAPS_PORT)
            s.sendall(hello)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST
        mailedge.assert_alive()


def test_reset_mid_relay(mailedge, dovecot, good):
    """A client fetching a 20 MB message resets the connection (SO_LINGER 0) after
    about 1 MB: mailedge logs the session's end and keeps serving others."""
    user = dovecot.add_user()
    _tok, big = make_big_message(20 * 1024 * 1024)
    dovecot.place_message(user, big)
    with GoodImapSession(IMAPS_PORT, *good):
        ctx = client_context()
        raw = socket.create_connection((HOST, IMAPS_PORT), timeout=30)
        s = ctx.wrap_socket(raw, server_hostname=HOST)
        local = s.getsockname()[1]
        assert read_line(s).startswith(b"* OK")
        s.sendall(f"a1 LOGIN {user} test\r\n".encode())
        deadline = time.monotonic() + 30
        while not read_line(s).startswith(b"a1 OK"):
            assert time.monotonic() < deadline
        s.sendall(b"a2 SELECT INBOX\r\na3 UID FETCH 1 (BODY.PEEK[])\r\n")
        got = 0
        while got < 1024 * 1024:
            d = s.recv(65536)
            assert d, "server closed early"
            got += len(d)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # no close_notify, RST because of unread data and linger 0
        mailedge.wait_for_log(CLOSE_LINE.format(port=local), timeout=CLOSE_BOUND)
    mailedge.assert_alive()
    # The backend side was torn down too: Dovecot logs the disconnect of that session.
    dovecot.wait_for_log(rf"imap\({user}\).*Disconnected", timeout=CLOSE_BOUND)


def test_garbage_after_handshake(mailedge, good):
    """A TLS session whose next record is garbage is closed; others continue."""
    with GoodImapSession(IMAPS_PORT, *good):
        ctx = client_context()
        raw = socket.create_connection((HOST, IMAPS_PORT), timeout=30)
        s = ctx.wrap_socket(raw, server_hostname=HOST)
        local = s.getsockname()[1]
        assert read_line(s).startswith(b"* OK")
        dup = socket.socket(fileno=os.dup(s.fileno()))
        dup.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))  # bogus application record
        dup.close()
        try:
            data, how = read_until_close(s, timeout=CLOSE_BOUND)
        except Exception as e:  # an alert surfaces as an SSLError: also a drop
            how = f"ssl error {e}"
        s.close()
        assert how != "timeout"
        mailedge.wait_for_log(CLOSE_LINE.format(port=local), timeout=CLOSE_BOUND)
    mailedge.assert_alive()


@pytest.mark.parametrize("hello,desc", [
    (lambda: sslv2_client_hello(0x0002), "SSLv2 CLIENT-HELLO"),
    (lambda: sslv2_client_hello(0x0301), "SSLv2-compatible hello for TLS 1.0"),
    (lambda: client_hello([SUITES["TLS_RSA_WITH_3DES_EDE_CBC_SHA"],
                           SUITES["TLS_RSA_WITH_RC4_128_SHA"],
                           SUITES["TLS_RSA_WITH_AES_128_CBC_SHA"]],
                          version=0x0300, record_version=0x0300), "SSLv3 hello"),
    (lambda: client_hello([SUITES["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"],
                           SUITES["TLS_RSA_WITH_AES_128_CBC_SHA"]],
                          version=0x0301), "TLS 1.0 hello"),
], ids=["sslv2", "sslv2-compat-tls1", "sslv3", "tls1.0"])
def test_old_protocol_hello(mailedge, good, hello, desc):
    with GoodImapSession(IMAPS_PORT, *good):
        kind, a, b = probe_hello(SMTPS_PORT, hello())
        assert kind in ("alert", "closed", "reset"), f"{desc}: got {kind} {a} {b}"
    mailedge.assert_alive()


def test_s_client_tls1_refused_while_good_session(mailedge, good):
    with GoodImapSession(IMAPS_PORT, *good):
        rc, out = s_client(POP3S_PORT, ["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"])
        assert rc != 0 and "no protocols available" not in out, out
    mailedge.assert_alive()
