"""STARTTLS (issue 3) with real clients through mailedge to the real Postfix and Dovecot:
openssl s_client -starttls, swaks --tls, curl --ssl-reqd and Python's smtplib / imaplib /
poplib, on `security_level = encrypt` listeners (the default) and, for plaintext MX
delivery, on a `may` listener. Every client verifies mailedge's certificate against
certs-example/out/ca.crt; messages are checked byte-exact at the other end."""

import imaplib
import poplib
import re
import smtplib

import pytest

from harness.clients import run
from harness.configs import EDGE_HOSTNAME
from harness.mailedge import cert
from harness.messages import make_message
from harness.postfix import split_prepended
from harness.tlsutil import HOST, client_context, s_client

pytestmark = pytest.mark.mailedge

CLOSE_LINE = r"disconnect from unknown\[127\.0\.0\.1\]:{port}\b.*reason=\S+ tls={tls}\b"
PLAIN_LINE = (r"client unknown\[127\.0\.0\.1\]:{port} continues without STARTTLS: "
              r"relaying in plaintext \(security_level = may\)")
DISCARD_LINE = r"discarded \d+ bytes sent by unknown\[127\.0\.0\.1\]:{port} after STARTTLS"


@pytest.fixture
def mailbox(dovecot):
    """A fresh Dovecot user holding one message (UID 1). Returns (user, message)."""
    user = dovecot.add_user()
    _tok, msg = make_message(to=f"{user}@example.test")
    dovecot.place_message(user, msg)
    return user, msg


def local_port_of(sock):
    return sock.getsockname()[1]


# --- openssl s_client -starttls ----------------------------------------------------------------

def test_s_client_starttls_smtp(starttls_edge, postfix):
    rc, out = s_client(starttls_edge.ports["smtp"],
                       ["-starttls", "smtp", "-name", "client.example.test", "-ign_eof"],
                       stdin=b"EHLO client.example.test\r\nQUIT\r\n")
    assert rc == 0, out
    assert "Verify return code: 0 (ok)" in out, out
    assert "Didn't find STARTTLS" not in out, out  # it was offered before TLS
    # After TLS the EHLO reached Postfix (its host name, not mailedge's) ...
    m = re.search(r"^250-backend\.example\.test\r?$", out, re.M)
    assert m, out
    # (s_client prints the last line of the pre-TLS EHLO reply just before the data
    # read over TLS: look only at what follows Postfix's first line.)
    post = out[m.start():]
    assert re.search(r"^250 \S+", post, re.M), out
    assert re.search(r"^221 2\.0\.0 Bye", post, re.M), out
    # ... and STARTTLS is not offered again, nor is mailedge's own greeting replayed.
    assert not re.search(r"^250[- ]STARTTLS", post, re.M), out
    assert EDGE_HOSTNAME not in post, out


def test_s_client_starttls_imap(starttls_edge, dovecot):
    rc, out = s_client(starttls_edge.ports["imap"], ["-starttls", "imap", "-ign_eof"],
                       stdin=b"a1 CAPABILITY\r\na2 LOGOUT\r\n")
    assert rc == 0, out
    assert "Verify return code: 0 (ok)" in out, out
    assert "STARTTLS not supported" not in out and "Didn't find" not in out, out
    caps = re.findall(r"^\* CAPABILITY (.*?)\r?$", out, re.M)
    assert caps, out
    atoms = caps[-1].split()
    # Dovecot's own list after TLS: authentication offered, no STARTTLS, no LOGINDISABLED.
    assert "IMAP4rev1" in atoms and "AUTH=PLAIN" in atoms, atoms
    assert "STARTTLS" not in atoms and "LOGINDISABLED" not in atoms, atoms
    assert re.search(r"^a1 OK ", out, re.M) and "a1 OK Capability completed." not in out, out
    assert re.search(r"^a2 OK ", out, re.M), out


def test_s_client_starttls_pop3(starttls_edge, dovecot):
    rc, out = s_client(starttls_edge.ports["pop3"], ["-starttls", "pop3", "-ign_eof"],
                       stdin=b"CAPA\r\nQUIT\r\n")
    assert rc == 0, out
    assert "Verify return code: 0 (ok)" in out, out
    m = re.search(r"^\+OK[^\n]*\n(.*?)^\.\r?$", out, re.M | re.S)
    assert m, out
    capa = [l.strip() for l in m.group(1).splitlines() if l.strip()]
    # Dovecot's CAPA after TLS: USER and SASL are back, STLS is not offered.
    assert "USER" in capa and any(c.startswith("SASL ") for c in capa), capa
    assert "STLS" not in capa, capa
    assert re.search(r"^\+OK Logging out", out, re.M), out


# --- swaks --tls ---------------------------------------------------------------------------------

def test_swaks_starttls_delivers_byte_exact(starttls_edge, postfix, tmp_path):
    tok, msg = make_message(subject="via swaks --tls")
    f = tmp_path / "msg.eml"
    f.write_bytes(msg[:-2])  # swaks adds CRLF "." CRLF
    r = run(["swaks", "--server", "127.0.0.1", "--port", str(starttls_edge.ports["smtp"]),
             "--tls", "--tls-verify", "--tls-ca-path", cert("ca.crt"),
             "--ehlo", "client.example.test", "--from", "sender@example.test",
             "--to", "test@example.test", "--data", str(f), "--timeout", "60"])
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    # Before TLS: mailedge's greeting and EHLO, STARTTLS offered and accepted.
    assert re.search(rf"<-  220 {re.escape(EDGE_HOSTNAME)} ESMTP", out), out
    assert re.search(r"<-  250[- ]STARTTLS", out), out
    assert re.search(r" -> STARTTLS", out), out
    assert re.search(r"<-  220 2\.0\.0 Ready to start TLS", out), out
    # After TLS (swaks marks lines ~> / <~): Postfix answers, no STARTTLS offered.
    assert re.search(r"<~  250-backend\.example\.test", out), out
    assert not re.search(r"<~  250[- ]STARTTLS", out), out
    assert re.search(r"<~  250 2\.0\.0 Ok: queued", out), out
    delivered = postfix.wait_for_message(f"<{tok}@example.test>")
    split_prepended(delivered, msg)


# --- curl --ssl-reqd -----------------------------------------------------------------------------

def test_curl_smtp_starttls_upload(starttls_edge, postfix, tmp_path):
    tok, msg = make_message(subject="via curl smtp starttls")
    f = tmp_path / "msg.eml"
    f.write_bytes(msg)
    r = run(["curl", "--silent", "--show-error", "--max-time", "60", "--ssl-reqd",
             "--cacert", cert("ca.crt"), f"smtp://127.0.0.1:{starttls_edge.ports['smtp']}",
             "--mail-from", "sender@example.test", "--mail-rcpt", "test@example.test",
             "--upload-file", str(f)])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    split_prepended(postfix.wait_for_message(f"<{tok}@example.test>"), msg)


def test_curl_imap_starttls_fetch_byte_exact(starttls_edge, mailbox):
    user, msg = mailbox
    r = run(["curl", "--silent", "--show-error", "--max-time", "60", "--ssl-reqd",
             "--cacert", cert("ca.crt"), "--user", f"{user}:test",
             f"imap://127.0.0.1:{starttls_edge.ports['imap']}/INBOX;UID=1"])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout == msg


def test_curl_pop3_starttls_retr_byte_exact(starttls_edge, mailbox):
    user, msg = mailbox
    r = run(["curl", "--silent", "--show-error", "--max-time", "60", "--ssl-reqd",
             "--cacert", cert("ca.crt"), "--user", f"{user}:test",
             f"pop3://127.0.0.1:{starttls_edge.ports['pop3']}/1"])
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stdout == msg


# --- Python stdlib clients ---------------------------------------------------------------------------

def test_smtplib_starttls_delivers_byte_exact(starttls_edge, postfix):
    me, port = starttls_edge.me, starttls_edge.ports["smtp"]
    tok, msg = make_message(subject="via smtplib starttls")
    with smtplib.SMTP(HOST, port, timeout=60) as s:
        local = local_port_of(s.sock)
        code, resp = s.ehlo("client.example.test")
        assert code == 250 and resp.startswith(EDGE_HOSTNAME.encode()), resp
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), resp  # encrypt: no AUTH before TLS
        code, resp = s.starttls(context=client_context())
        assert (code, resp) == (220, b"2.0.0 Ready to start TLS")
        code, resp = s.ehlo("client.example.test")
        assert code == 250 and resp.startswith(b"backend.example.test"), resp
        assert not s.has_extn("starttls"), resp
        assert s.sendmail("sender@example.test", ["test@example.test"], msg) == {}
    split_prepended(postfix.wait_for_message(f"<{tok}@example.test>"), msg)
    me.wait_for_log(CLOSE_LINE.format(port=local, tls="yes"))
    assert not me.log_lines(PLAIN_LINE.format(port=local))
    assert not me.log_lines(DISCARD_LINE.format(port=local))


def test_imaplib_starttls_fetch_byte_exact(starttls_edge, mailbox):
    user, msg = mailbox
    m = imaplib.IMAP4(HOST, starttls_edge.ports["imap"], timeout=60)
    try:
        assert m.welcome.startswith(b"* OK [CAPABILITY ")
        assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities
        typ, _ = m.starttls(ssl_context=client_context())
        assert typ == "OK"
        # imaplib asked again after TLS: Dovecot's answer, without STARTTLS.
        assert "STARTTLS" not in m.capabilities, m.capabilities
        assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
        typ, _ = m.login(user, "test")
        assert typ == "OK"
        typ, _ = m.select("INBOX")
        assert typ == "OK"
        typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
        assert typ == "OK" and isinstance(data[0], tuple), data
        assert data[0][1] == msg
    finally:
        typ, _ = m.logout()
    assert typ == "BYE"


def test_poplib_stls_retr_byte_exact(starttls_edge, mailbox):
    user, msg = mailbox
    p = poplib.POP3(HOST, starttls_edge.ports["pop3"], timeout=60)
    try:
        assert p.getwelcome() == f"+OK {EDGE_HOSTNAME} POP3 ready.".encode()
        before = p.capa()
        assert "STLS" in before and "USER" not in before and "SASL" not in before, before
        assert p.stls(context=client_context()).startswith(b"+OK")
        after = p.capa()
        assert "STLS" not in after and "USER" in after, after
        p.user(user)
        p.pass_("test")
        resp, lines, _octets = p.retr(1)
        assert resp.startswith(b"+OK")
        assert b"\r\n".join(lines) + b"\r\n" == msg
    finally:
        assert p.quit().startswith(b"+OK")


# --- security_level = may ------------------------------------------------------------------------------

def test_may_plaintext_mx_delivery_byte_exact(starttls_edge, postfix):
    me, port = starttls_edge.me, starttls_edge.ports["smtp-may"]
    tok, msg = make_message(subject="plaintext MX delivery")
    with smtplib.SMTP(HOST, port, timeout=60) as s:
        local = local_port_of(s.sock)
        code, resp = s.ehlo("plain-mx.example.test")
        assert code == 250 and resp.startswith(EDGE_HOSTNAME.encode()), resp
        assert s.has_extn("starttls")  # offered, not required
        assert s.sendmail("sender@example.test", ["test@example.test"], msg) == {}
    delivered = postfix.wait_for_message(f"<{tok}@example.test>")
    prefix = split_prepended(delivered, msg)
    # mailedge replayed the client's EHLO to Postfix before relaying MAIL.
    assert re.search(rb"^Received: from plain-mx\.example\.test ", prefix, re.M), prefix
    me.wait_for_log(PLAIN_LINE.format(port=local))
    me.wait_for_log(CLOSE_LINE.format(port=local, tls="no"))


def test_may_same_listener_with_starttls(starttls_edge, postfix):
    me, port = starttls_edge.me, starttls_edge.ports["smtp-may"]
    tok, msg = make_message(subject="may listener, client uses STARTTLS")
    with smtplib.SMTP(HOST, port, timeout=60) as s:
        local = local_port_of(s.sock)
        s.ehlo("tls-mx.example.test")
        code, _ = s.starttls(context=client_context())
        assert code == 220
        code, resp = s.ehlo("tls-mx.example.test")
        assert code == 250 and resp.startswith(b"backend.example.test"), resp
        assert not s.has_extn("starttls")
        assert s.sendmail("sender@example.test", ["test@example.test"], msg) == {}
    split_prepended(postfix.wait_for_message(f"<{tok}@example.test>"), msg)
    me.wait_for_log(CLOSE_LINE.format(port=local, tls="yes"))
    assert not me.log_lines(PLAIN_LINE.format(port=local))


def test_may_imap_plaintext_login_relayed(starttls_edge, mailbox):
    """IMAP on `may`: LOGIN without STARTTLS goes to Dovecot in plaintext."""
    me = starttls_edge.me
    user, msg = mailbox
    m = imaplib.IMAP4(HOST, starttls_edge.ports["imap-may"], timeout=60)
    local = local_port_of(m.sock)
    try:
        assert "STARTTLS" in m.capabilities and "LOGINDISABLED" not in m.capabilities
        typ, _ = m.login(user, "test")
        assert typ == "OK"
        typ, _ = m.select("INBOX")
        assert typ == "OK"
        typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == msg, data
    finally:
        m.logout()
    me.wait_for_log(PLAIN_LINE.format(port=local))
    me.wait_for_log(CLOSE_LINE.format(port=local, tls="no"))


def test_may_pop3_plaintext_user_pass_relayed(starttls_edge, mailbox):
    me = starttls_edge.me
    user, msg = mailbox
    p = poplib.POP3(HOST, starttls_edge.ports["pop3-may"], timeout=60)
    local = local_port_of(p.sock)
    try:
        caps = p.capa()
        assert "STLS" in caps and "USER" in caps, caps  # may keeps USER
        p.user(user)
        p.pass_("test")
        resp, lines, _ = p.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == msg
    finally:
        p.quit()
    me.wait_for_log(PLAIN_LINE.format(port=local))
    me.wait_for_log(CLOSE_LINE.format(port=local, tls="no"))
