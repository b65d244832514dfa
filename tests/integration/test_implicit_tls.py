"""Implicit TLS (SMTPS/IMAPS/POP3S) through mailedge to real Postfix and Dovecot, with
real clients: Python's smtplib/imaplib/poplib, curl, swaks and openssl s_client. Every
client verifies mailedge's certificate against certs-example/out/ca.crt."""

import re
import socket

import pytest

from harness.ports import IMAPS_PORT, POP3S_PORT, SMTPS_PORT
from harness.clients import imaps_fetch, pop3s_retr, run, smtps_send
from harness.mailedge import cert
from harness.messages import make_message
from harness.postfix import split_prepended
from harness.tlsutil import client_context, read_line, s_client

pytestmark = pytest.mark.mailedge

TLS_LINE = (r"TLS connection established from unknown\[127\.0\.0\.1\]:{port}: "
            r"(TLSv1\.[23]) with cipher (\S+) \((\d+)/(\d+) bits\)")
CLOSE_LINE = r"disconnect from unknown\[127\.0\.0\.1\]:{port}\b.*reason="


# --- SMTPS -> Postfix ------------------------------------------------------------------------

def test_smtps_smtplib_delivers_byte_exact(mailedge, postfix):
    tok, msg = make_message()
    smtps_send(SMTPS_PORT, msg)
    delivered = postfix.wait_for_message(f"<{tok}@example.test>")
    prefix = split_prepended(delivered, msg)
    # Postfix saw the session coming from mailedge (loopback) and logged it.
    assert b"Received: from " in prefix
    postfix.wait_for_log(rf"message-id=<{tok}@example.test>")


def test_smtps_curl_upload(mailedge, postfix, tmp_path):
    tok, msg = make_message(subject="via curl")
    f = tmp_path / "msg.eml"
    f.write_bytes(msg)
    r = run(["curl", "--silent", "--show-error", "--max-time", "60",
             "--cacert", cert("ca.crt"), f"smtps://127.0.0.1:{SMTPS_PORT}",
             "--mail-from", "sender@example.test", "--mail-rcpt", "test@example.test",
             "--upload-file", str(f)])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    delivered = postfix.wait_for_message(f"<{tok}@example.test>")
    split_prepended(delivered, msg)


def test_smtps_swaks_tls_on_connect(mailedge, postfix, tmp_path):
    tok, msg = make_message(subject="via swaks")
    f = tmp_path / "msg.eml"
    # swaks sends the data, then CRLF "." CRLF: leave the final CRLF to it.
    assert msg.endswith(b"\r\n")
    f.write_bytes(msg[:-2])
    r = run(["swaks", "--server", "127.0.0.1", "--port", str(SMTPS_PORT),
             "--tls-on-connect", "--tls-verify", "--tls-ca-path", cert("ca.crt"),
             "--ehlo", "client.example.test", "--from", "sender@example.test",
             "--to", "test@example.test", "--data", str(f), "--timeout", "60"])
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "TLS started" in out or "TLS started" in r.stderr.decode(errors="replace")
    assert re.search(r"<~  220 backend\.example\.test ESMTP", out), out
    assert re.search(r"<~  250 2\.0\.0 Ok: queued", out), out
    delivered = postfix.wait_for_message(f"<{tok}@example.test>")
    split_prepended(delivered, msg)


def test_smtps_postfix_logs_session(mailedge, postfix):
    tok, msg = make_message(subject="log check")
    smtps_send(SMTPS_PORT, msg)
    m = postfix.wait_for_log(
        r"smtpd\[\d+\]: (\w+): client=\S+\[127\.0\.0\.1\]")
    queue_id_lines = postfix.wait_for_log(rf"(\w+): message-id=<{tok}@example\.test>")
    qid = queue_id_lines.group(1)
    postfix.wait_for_log(rf"{qid}: to=<test@example\.test>, relay=virtual.*status=sent")
    assert m


# --- IMAPS / POP3S -> Dovecot -------------------------------------------------------------------

@pytest.fixture
def mailbox(dovecot):
    """A fresh Dovecot user holding one message (UID 1). Returns (user, message)."""
    user = dovecot.add_user()
    _tok, msg = make_message(to=f"{user}@example.test")
    dovecot.place_message(user, msg)
    return user, msg


def test_imaps_imaplib_fetch_byte_exact(mailedge, mailbox):
    user, msg = mailbox
    assert imaps_fetch(IMAPS_PORT, user) == msg


def test_imaps_curl_fetch_byte_exact(mailedge, mailbox):
    user, msg = mailbox
    r = run(["curl", "--silent", "--show-error", "--max-time", "60",
             "--cacert", cert("ca.crt"), "--user", f"{user}:test",
             f"imaps://127.0.0.1:{IMAPS_PORT}/INBOX;UID=1"])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout == msg


def test_pop3s_poplib_retr_byte_exact(mailedge, mailbox):
    user, msg = mailbox
    assert pop3s_retr(POP3S_PORT, user) == msg


def test_pop3s_curl_retr_byte_exact(mailedge, mailbox):
    user, msg = mailbox
    r = run(["curl", "--silent", "--show-error", "--max-time", "60",
             "--cacert", cert("ca.crt"), "--user", f"{user}:test",
             f"pop3s://127.0.0.1:{POP3S_PORT}/1"])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout == msg


# --- backend greetings through openssl s_client ---------------------------------------------------

@pytest.mark.parametrize("port,stdin,greeting", [
    (SMTPS_PORT, b"QUIT\r\n", rb"^220 backend\.example\.test ESMTP Postfix"),
    (IMAPS_PORT, b"a1 LOGOUT\r\n", rb"^\* OK .*Dovecot.* ready\."),
    (POP3S_PORT, b"QUIT\r\n", rb"^\+OK Dovecot.* ready\."),
], ids=["smtps", "imaps", "pop3s"])
def test_s_client_sees_backend_greeting(mailedge, postfix, dovecot, port, stdin, greeting):
    rc, out = s_client(port, ["-quiet"], stdin=stdin)
    assert rc == 0, out
    assert "verify error" not in out, out
    assert re.search(greeting.decode(), out, re.M), out


@pytest.mark.parametrize("port,expect_key", [
    (SMTPS_PORT, "RSA"), (IMAPS_PORT, "EC"), (POP3S_PORT, "RSA")],
    ids=["smtps-rsa", "imaps-ecdsa", "pop3s-combined-pem"])
def test_certificate_chain_verifies(mailedge, port, expect_key):
    rc, out = s_client(port, ["-brief"], stdin=b"")
    assert "Verification: OK" in out, out
    assert "Protocol version: TLSv1.3" in out, out
    m = re.search(r"Peer certificate: (.*)", out)
    assert m and "mail.example.test" in m.group(1), out
    if expect_key == "EC":
        assert re.search(r"^(Peer )?[Ss]ignature type: ECDSA", out, re.M), out
    else:
        assert re.search(r"^(Peer )?[Ss]ignature type: RSA", out, re.M), out


# --- mailedge's own log ---------------------------------------------------------------------------

def test_tls_and_close_log_lines(mailedge, dovecot):
    ctx = client_context()
    raw = socket.create_connection(("127.0.0.1", IMAPS_PORT), timeout=15)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    port = s.getsockname()[1]
    greeting = read_line(s)
    assert greeting.startswith(b"* OK")
    s.sendall(b"a1 LOGOUT\r\n")
    assert read_line(s).startswith(b"* BYE")
    assert read_line(s).startswith(b"a1 OK")
    s.close()

    lines = mailedge.wait_for_log(TLS_LINE.format(port=port))
    assert len(lines) == 1, lines
    m = re.search(TLS_LINE.format(port=port), lines[0])
    assert m.group(1) == "TLSv1.3", lines[0]
    assert m.group(2).startswith("TLS_"), lines[0]
    assert m.group(3) == m.group(4), lines[0]
    close = mailedge.wait_for_log(CLOSE_LINE.format(port=port))
    assert len(close) == 1, close
    assert re.search(r"reason=\S+", close[0]), close[0]
    # Byte counts: the client sent at least "a1 LOGOUT\r\n" and received the greeting.
    counts = [int(n) for n in re.findall(r"\b[a-z_]+=(\d+)\b", close[0])]
    assert counts and max(counts) >= len(greeting), close[0]


def test_tls_log_line_once_per_session(mailedge, mailbox):
    user, msg = mailbox
    before = len(mailedge.log_lines(r"TLS connection established"))
    for _ in range(3):
        assert imaps_fetch(IMAPS_PORT, user) == msg
    mailedge.wait_for_log(r"TLS connection established", count=before + 3)
    mailedge.assert_alive()
