"""TLS policy of mailedge's listeners (defaults: Mozilla "intermediate"): TLS >= 1.2,
ECDHE + AEAD only. Old versions and weak suites are offered with openssl s_client where
the local OpenSSL still can, and with hand-made ClientHellos where it cannot (RC4, 3DES,
EXPORT, SSLv3 are compiled out of Debian's OpenSSL 3)."""

import os
import re
import socket
import ssl

import pytest

from harness.clients import imaps_fetch
from harness.configs import backend_sections, listener_section
from harness.mailedge import render, run_tool
from harness.ports import IMAPS_PORT, POP3S_PORT, SMTPS_PORT
from harness.tlsutil import (CLIENT_SIDE_FAILURES, SUITES, client_context, client_hello,
                             probe_hello, s_client, s_client_negotiated)

pytestmark = pytest.mark.mailedge


def assert_handshake_refused(port, args):
    rc, out = s_client(port, args, stdin=b"")
    for marker in CLIENT_SIDE_FAILURES:
        assert marker not in out, (f"openssl refused {args} on the client side, so the "
                                   f"test proves nothing:\n{out}")
    proto, cipher = s_client_negotiated(out)
    assert rc != 0 and cipher is None, f"handshake with {args} succeeded:\n{out}"
    return out


@pytest.mark.parametrize("args", [
    ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
    ["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"],
], ids=["tls1.1", "tls1.0"])
@pytest.mark.parametrize("port", [SMTPS_PORT, IMAPS_PORT, POP3S_PORT],
                         ids=["smtps", "imaps", "pop3s"])
def test_old_tls_versions_refused(mailedge, port, args):
    assert_handshake_refused(port, args)
    mailedge.assert_alive()


@pytest.mark.parametrize("cipher", [
    "NULL-SHA256@SECLEVEL=0",           # no encryption, static RSA
    "ECDHE-RSA-NULL-SHA@SECLEVEL=0",    # no encryption, ECDHE
    "aNULL@SECLEVEL=0",                 # anonymous
    "ECDHE-RSA-AES128-SHA",             # CBC
    "ECDHE-RSA-AES256-SHA384",          # CBC
    "AES128-GCM-SHA256",                # static RSA key exchange
    "AES256-SHA",                       # static RSA, CBC
], ids=lambda c: c.split("@")[0])
def test_weak_tls12_ciphers_refused_s_client(mailedge, cipher):
    assert_handshake_refused(SMTPS_PORT, ["-tls1_2", "-cipher", cipher])


def test_weak_ecdsa_cbc_refused_s_client(mailedge):
    assert_handshake_refused(IMAPS_PORT, ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"])


WEAK_SUITES = [
    "TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_RC4_128_MD5", "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_EXPORT_WITH_RC4_40_MD5", "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA",
    "TLS_RSA_WITH_DES_CBC_SHA", "TLS_RSA_WITH_NULL_SHA", "TLS_ECDHE_RSA_WITH_NULL_SHA",
    "TLS_DH_anon_WITH_AES_128_GCM_SHA256", "TLS_ECDH_anon_WITH_AES_128_CBC_SHA",
]


def test_raw_hello_control_ecdhe_gcm_accepted(mailedge):
    """The hand-made ClientHello is good enough to get a ServerHello when it offers an
    acceptable suite: so refusals below are mailedge's doing."""
    kind, version, suite = probe_hello(
        SMTPS_PORT, client_hello([SUITES["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]]))
    assert (kind, version, suite) == ("server_hello", 0x0303, 0xC02F)
    kind, version, suite = probe_hello(
        IMAPS_PORT, client_hello([SUITES["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"]]))
    assert (kind, version, suite) == ("server_hello", 0x0303, 0xC02B)


@pytest.mark.parametrize("name", WEAK_SUITES)
def test_weak_suites_refused_raw_hello(mailedge, name):
    kind, a, b = probe_hello(SMTPS_PORT, client_hello([SUITES[name]]))
    assert kind != "server_hello", f"mailedge negotiated {name}: version {a:#x} suite {b:#x}"
    assert kind in ("alert", "closed", "reset"), (kind, a, b)


def test_weak_suites_refused_even_mixed_with_old_versions(mailedge):
    everything_weak = [SUITES[n] for n in WEAK_SUITES]
    for version in (0x0300, 0x0301, 0x0302):
        kind, a, b = probe_hello(SMTPS_PORT, client_hello(everything_weak, version=version))
        assert kind != "server_hello", (version, a, b)
    mailedge.assert_alive()


@pytest.mark.parametrize("port,cipher", [
    (SMTPS_PORT, "ECDHE-RSA-AES128-GCM-SHA256"),
    (SMTPS_PORT, "ECDHE-RSA-AES256-GCM-SHA384"),
    (SMTPS_PORT, "ECDHE-RSA-CHACHA20-POLY1305"),
    (IMAPS_PORT, "ECDHE-ECDSA-AES128-GCM-SHA256"),
    (IMAPS_PORT, "ECDHE-ECDSA-AES256-GCM-SHA384"),
    (POP3S_PORT, "ECDHE-RSA-AES128-GCM-SHA256"),
])
def test_tls12_ecdhe_aead_works(mailedge, postfix, dovecot, port, cipher):
    rc, out = s_client(port, ["-tls1_2", "-cipher", cipher], stdin=b"")
    proto, negotiated = s_client_negotiated(out)
    assert proto == "TLSv1.2" and negotiated == cipher, out
    assert "Verify return code: 0 (ok)" in out, out


def test_tls12_python_client_fetches(mailedge, dovecot):
    user = dovecot.add_user()
    from harness.messages import make_message
    _tok, msg = make_message(to=f"{user}@example.test")
    dovecot.place_message(user, msg)
    ctx = client_context(max_version=ssl.TLSVersion.TLSv1_2)
    assert imaps_fetch(IMAPS_PORT, user, ctx=ctx) == msg


@pytest.mark.parametrize("suite", ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                   "TLS_CHACHA20_POLY1305_SHA256"])
def test_tls13_suites(mailedge, suite):
    rc, out = s_client(SMTPS_PORT, ["-tls1_3", "-ciphersuites", suite], stdin=b"")
    proto, negotiated = s_client_negotiated(out)
    assert proto == "TLSv1.3" and negotiated == suite, out


def _smtps_session(ctx, session=None):
    """One SMTPS connection: read the greeting (so the TLS 1.3 ticket that comes with
    it is processed), then QUIT. Returns (session, reused)."""
    raw = socket.create_connection(("127.0.0.1", SMTPS_PORT), timeout=15)
    with ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as s:
        greeting = s.recv(512)
        assert greeting.startswith(b"220"), greeting
        s.sendall(b"QUIT\r\n")
        s.recv(512)
        return s.session, s.session_reused


def test_tls13_resumption_then_tls12_and_other_suites_still_accepted(mailedge, postfix):
    """A resumed TLS 1.3 handshake must not narrow what the listener accepts afterwards
    (wolfSSL single-threaded builds refined the shared suite list in place: every
    TLS 1.2 client failed after the first resumption; see wolfssl/patches)."""
    ctx = client_context(min_version=ssl.TLSVersion.TLSv1_3)
    session, reused = _smtps_session(ctx)
    assert session is not None and not reused
    for _ in range(3):
        _, reused = _smtps_session(ctx, session)
        assert reused, "TLS 1.3 session was not resumed"
    rc, out = s_client(SMTPS_PORT, ["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
                       stdin=b"")
    assert s_client_negotiated(out) == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"), out
    rc, out = s_client(SMTPS_PORT, ["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"],
                       stdin=b"")
    assert s_client_negotiated(out) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384"), out


# --- weak settings are refused by the config check ---------------------------------------------

def _config_with(listener_extra):
    sections = backend_sections()
    sections.append(listener_section("smtps", "smtp", 21460, "postfix", "rsa",
                                     **listener_extra))
    return render(sections)


@pytest.mark.parametrize("key,value", [
    ("min_version", "TLSv1.1"),
    ("min_version", "TLSv1"),
    ("min_version", "SSLv3"),
    ("ciphers", "NULL-SHA"),
    ("ciphers", "ECDHE-RSA-AES128-GCM-SHA256:RC4-SHA"),
    ("ciphers", "DES-CBC3-SHA"),
    ("ciphers", "ECDHE-RSA-AES128-SHA"),
    ("ciphers", "ADH-AES128-GCM-SHA256"),
    ("ciphers", "AES128-GCM-SHA256"),
    ("ciphers", "EXP-RC4-MD5"),
])
def test_config_check_rejects_weak_settings(mailedge_bin, config_dir, key, value):
    text = _config_with({key: value})
    path = os.path.join(config_dir, "weak.ini")
    with open(path, "w") as f:
        f.write(text)
    line = next(i + 1 for i, l in enumerate(text.splitlines()) if l.startswith(f"{key} ="))
    r = run_tool(["-t", "-c", path])
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert re.search(rf"^{re.escape(path)}:{line}: ", out, re.M), (
        f"expected '{path}:{line}: ...' for {key} = {value}, got:\n{out}")


def test_config_check_accepts_strong_explicit_settings(mailedge_bin, config_dir):
    text = _config_with({
        "min_version": "TLSv1.2",
        "ciphers": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305",
        "ciphersuites": "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
        "groups": "X25519:P-256",
    })
    path = os.path.join(config_dir, "strong.ini")
    with open(path, "w") as f:
        f.write(text)
    r = run_tool(["-t", "-c", path])
    assert r.returncode == 0, r.stdout + r.stderr


def test_min_version_tls13_refuses_tls12(mailedge_factory, dovecot):
    from harness.ports import alloc_port
    port = alloc_port()
    sections = backend_sections()
    sections.append(listener_section("imaps13", "imap", port, "imap", "ecdsa",
                                     min_version="TLSv1.3"))
    me = mailedge_factory(render(sections), "tls13-only")
    assert_handshake_refused(port, ["-tls1_2"])
    rc, out = s_client(port, ["-quiet"], stdin=b"a LOGOUT\r\n")
    assert re.search(r"^\* OK", out, re.M), out
    me.assert_alive()


def test_groups_limit_tls12_curves(mailedge_factory, dovecot):
    """`groups` binds TLS 1.2 ECDHE as well as TLS 1.3 key shares: a TLS 1.2 client
    that offers none of the listed groups is refused (wolfSSL would otherwise fall back
    to P-256), one that offers a listed group gets it."""
    from harness.ports import alloc_port
    port = alloc_port()
    sections = backend_sections()
    sections.append(listener_section("imaps-x25519", "imap", port, "imap", "rsa",
                                     groups="X25519"))
    me = mailedge_factory(render(sections), "groups-x25519")
    assert_handshake_refused(port, ["-tls1_2", "-groups", "P-256"])
    assert_handshake_refused(port, ["-tls1_2", "-groups", "P-384:P-521"])
    rc, out = s_client(port, ["-tls1_2", "-groups", "P-256:X25519"], stdin=b"")
    assert s_client_negotiated(out) == ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"), out
    assert "Server Temp Key: X25519" in out, out
    rc, out = s_client(port, ["-tls1_3", "-groups", "P-256"], stdin=b"")
    assert s_client_negotiated(out)[1] is None, out
    me.assert_alive()
