"""When no backend answers, mailedge still completes the TLS handshake and tells the
client in its own protocol (SMTP 421 4.3.2, IMAP * BYE, POP3 -ERR), then closes the TLS
session cleanly (close_notify). With a list of addresses it fails over."""

import re

import pytest

from harness.clients import imaps_fetch, pop3s_retr, smtps_send
from harness.configs import backend_sections, listener_section
from harness.dovecot import IMAP_PORT, POP3_PORT
from harness.mailedge import render
from harness.messages import make_message
from harness.ports import alloc_port, closed_port
from harness.postfix import DEFAULT_PORT as POSTFIX_PORT, split_prepended
from harness.tlsutil import read_until_close, tls_connect

pytestmark = pytest.mark.mailedge


def three_listeners(smtp, imap, pop3, connect_timeout="5s"):
    ports = {"smtp": alloc_port(), "imap": alloc_port(), "pop3": alloc_port()}
    sections = backend_sections(smtp=smtp, imap=imap, pop3=pop3,
                                connect_timeout=connect_timeout)
    sections.append(listener_section("smtps", "smtp", ports["smtp"], "postfix", "rsa"))
    sections.append(listener_section("imaps", "imap", ports["imap"], "imap", "ecdsa"))
    sections.append(listener_section("pop3s", "pop3", ports["pop3"], "pop3", "pem"))
    return render(sections), ports


@pytest.fixture
def backends_down(mailedge_factory):
    dead = f"127.0.0.1:{closed_port()}"
    text, ports = three_listeners(dead, dead, dead, connect_timeout="2s")
    me = mailedge_factory(text, "backends-down")
    return me, ports


@pytest.mark.parametrize("proto,reply", [
    ("smtp", rb"421 4\.3\.2 "),
    ("imap", rb"\* BYE "),
    ("pop3", rb"-ERR "),
])
def test_backend_down_reply_then_clean_close(backends_down, proto, reply):
    me, ports = backends_down
    s = tls_connect(ports[proto], timeout=30)
    local = s.getsockname()[1]
    data, how = read_until_close(s, timeout=30)
    s.close()
    assert re.match(reply, data), f"{proto}: got {data!r}"
    assert data.endswith(b"\r\n") and data.count(b"\r\n") == 1, data
    assert how == "close_notify", f"{proto}: TLS session not closed cleanly ({how})"
    me.wait_for_log(rf"disconnect from unknown\[127\.0\.0\.1\]:{local}\b.*reason=")
    me.assert_alive()


def test_backend_down_smtplib_sees_421(backends_down):
    import smtplib
    from harness.tlsutil import client_context
    me, ports = backends_down
    with pytest.raises(smtplib.SMTPConnectError) as exc:
        smtplib.SMTP_SSL("127.0.0.1", ports["smtp"], context=client_context(), timeout=30)
    assert exc.value.smtp_code == 421
    assert exc.value.smtp_error.startswith(b"4.3.2")


def test_backend_down_repeatedly(backends_down):
    me, ports = backends_down
    for _ in range(20):
        s = tls_connect(ports["imap"], timeout=30)
        data, how = read_until_close(s, timeout=30)
        s.close()
        assert data.startswith(b"* BYE") and how == "close_notify", (data, how)
    me.assert_alive()


def test_failover_to_second_address(mailedge_factory, postfix, dovecot):
    dead = closed_port()
    text, ports = three_listeners(
        smtp=f"127.0.0.1:{dead}, 127.0.0.1:{POSTFIX_PORT}",
        imap=f"127.0.0.1:{dead}, 127.0.0.1:{IMAP_PORT}",
        pop3=f"127.0.0.1:{dead},127.0.0.1:{POP3_PORT}")
    me = mailedge_factory(text, "failover")

    user = dovecot.add_user()
    _tok, msg = make_message(to=f"{user}@example.test")
    dovecot.place_message(user, msg)
    assert imaps_fetch(ports["imap"], user) == msg
    assert pop3s_retr(ports["pop3"], user) == msg

    tok, msg = make_message(subject="failover")
    smtps_send(ports["smtp"], msg)
    split_prepended(postfix.wait_for_message(f"<{tok}@example.test>"), msg)
    me.assert_alive()
