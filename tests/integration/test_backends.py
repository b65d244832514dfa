"""The backends on their own, cleartext, no mailedge: proves the harness (real Postfix
delivering to a Maildir, real Dovecot serving one) before mailedge is put in front."""

import imaplib
import poplib
import smtplib

from harness.messages import make_message
from harness.postfix import split_prepended


def test_postfix_accepts_and_delivers_byte_exact(postfix):
    tok, msg = make_message()
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as s:
        code, banner = s.ehlo("client.example.test")
        assert code == 250
        refused = s.sendmail("sender@example.test", ["test@example.test"], msg)
        assert refused == {}
    delivered = postfix.wait_for_message(f"<{tok}@example.test>")
    split_prepended(delivered, msg)
    postfix.wait_for_log(rf"message-id=<{tok}@example.test>")
    postfix.wait_for_log(r"status=sent \(delivered to maildir\)")


def test_postfix_banner(postfix):
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as s:
        code, _ = s.noop()
        assert code == 250
    # smtplib keeps no banner; read it raw
    import socket
    with socket.create_connection(("127.0.0.1", postfix.port), timeout=10) as c:
        banner = c.recv(512)
    assert banner.startswith(b"220 backend.example.test ESMTP")


def test_dovecot_imap_fetch_byte_exact(dovecot):
    user = dovecot.add_user()
    tok, msg = make_message(to=f"{user}@example.test")
    dovecot.place_message(user, msg)
    m = imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=30)
    try:
        assert m.welcome.startswith(b"* OK")
        m.login(user, "test")
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
        assert typ == "OK"
        assert data[0][1] == msg
    finally:
        m.logout()
    dovecot.wait_for_log(rf"imap\({user}\).*Logged out")


def test_dovecot_pop3_retr_byte_exact(dovecot):
    user = dovecot.add_user()
    tok, msg = make_message(to=f"{user}@example.test")
    dovecot.place_message(user, msg)
    p = poplib.POP3("127.0.0.1", dovecot.pop3_port, timeout=30)
    try:
        assert p.getwelcome().startswith(b"+OK")
        p.user(user)
        p.pass_("test")
        count, size = p.stat()
        assert count == 1 and size == len(msg)
        resp, lines, octets = p.retr(1)
        assert resp.startswith(b"+OK")
        assert b"\r\n".join(lines) + b"\r\n" == msg
    finally:
        p.quit()


def test_dovecot_default_user_login(dovecot):
    m = imaplib.IMAP4("127.0.0.1", dovecot.imap_port, timeout=30)
    try:
        typ, _ = m.login("test", "test")
        assert typ == "OK"
    finally:
        m.logout()
