"""Client identity (issue 4) with the real Postfix: mailedge tells Postfix who the client
is through XCLIENT (smtpd_authorized_xclient_hosts) or a PROXY v1/v2 header
(smtpd_upstream_proxy_protocol = haproxy), for implicit TLS (smtps), STARTTLS (sub,
security_level = encrypt) and plaintext (mx, security_level = may) sessions. Each
client binds its own 127.0.0.x address, and Postfix's log and the delivered message's
Received header must name exactly that address (and the client's port), while a
`client_identity = none` backend sees mailedge's 127.0.0.1.

Postfix instance: DIR/postfix-ident (fixture postfix_ident), one smtpd service per
dialect, each with its own syslog_name (postfix-ident/xclient, postfix-ident/haproxy)."""

import re

import pytest

from harness.configs import listener_section
from harness.identity import SMTP, SMTPS, client_addr
from harness.mailedge import render
from harness.messages import make_message
from harness.ports import alloc_port
from harness.postfix import split_prepended
from harness.tlsutil import client_context

pytestmark = pytest.mark.mailedge

HELO = "client.example.test"
SERVICE = {"xclient": "postfix-ident/xclient", "proxy-v1": "postfix-ident/haproxy",
           "proxy-v2": "postfix-ident/haproxy", "none": "postfix-mailedge-it"}


def send_mail(port, mode, source, msg, header=None, sni=None):
    """One SMTP session through mailedge from `source`: smtps (implicit TLS), sub
    (STARTTLS) or mx (plaintext on a `may` listener). Returns the client's port."""
    if mode == "smtps":
        c = SMTPS(port, source=source, header=header, sni=sni)
    else:
        c = SMTP(port, source=source, header=header)
    try:
        cport = c.sock.getsockname()[1]
        code, _ = c.ehlo(HELO)
        assert code == 250, code
        if mode == "sub":
            code, reply = c.starttls(context=client_context())
            assert code == 220, reply
            code, _ = c.ehlo(HELO)
            assert code == 250
        refused = c.sendmail("sender@example.test", ["test@example.test"], msg)
        assert refused == {}, refused
    finally:
        c.quit()
    return cport


def queue_id_of(postfix, tok):
    m = postfix.wait_for_log(rf"(\w+): message-id=<{re.escape(tok)}@example\.test>")
    return m.group(1)


def received_header(delivered):
    m = re.search(rb"^Received: (.*(?:\n[ \t].*)*)", delivered, re.M)
    assert m, delivered[:500]
    return m.group(1).decode(errors="replace")


def postfix_warnings(postfix):
    return [l for l in postfix.log_text().splitlines()
            if re.search(r"\b(warning|error|fatal|panic):", l)]


# --- XCLIENT and PROXY v1/v2: Postfix sees the client ------------------------------------

@pytest.mark.parametrize("mode", ["smtps", "sub", "mx"])
@pytest.mark.parametrize("ident", ["xclient", "proxy-v1", "proxy-v2"])
def test_postfix_sees_client_address(ident_edge, postfix_ident, ident, mode):
    src = client_addr()
    tok, msg = make_message(subject=f"identity {ident} {mode}")
    cport = send_mail(ident_edge.ports[f"{mode}-{ident}"], mode, src, msg)
    delivered = postfix_ident.wait_for_message(f"<{tok}@example.test>")
    split_prepended(delivered, msg)
    qid = queue_id_of(postfix_ident, tok)
    svc = re.escape(SERVICE[ident])
    who = rf"unknown\[{re.escape(src)}\]:{cport}"
    # smtpd's queue-file line names the client (with its port: smtpd_client_port_logging).
    postfix_ident.wait_for_log(rf"{svc}/smtpd\[\d+\]: {qid}: client={who}\n")
    postfix_ident.wait_for_log(rf"{svc}/smtpd\[\d+\]: disconnect from {who} ")
    if ident == "xclient":
        # The TCP connection itself is mailedge's; XCLIENT then replaced the client.
        assert not re.search(rf"\]: connect from {who}", postfix_ident.log_text())
    else:
        # PROXY: smtpd reads the header before it logs the connection.
        postfix_ident.wait_for_log(rf"{svc}/smtpd\[\d+\]: connect from {who}\n")
    # The Received header Postfix wrote names the client, not mailedge.
    rcvd = received_header(delivered)
    assert f"(unknown [{src}])" in rcvd, rcvd
    assert f"from {HELO} " in rcvd, rcvd
    assert "[127.0.0.1]" not in rcvd, rcvd


def test_postfix_none_sees_mailedge(ident_edge, postfix_ident):
    """client_identity = none (a legacy backend): Postfix sees mailedge's 127.0.0.1."""
    src = client_addr()
    tok, msg = make_message(subject="identity none")
    send_mail(ident_edge.ports["smtps-none"], "smtps", src, msg)
    delivered = postfix_ident.wait_for_message(f"<{tok}@example.test>")
    qid = queue_id_of(postfix_ident, tok)
    postfix_ident.wait_for_log(
        rf"postfix-mailedge-it/smtpd\[\d+\]: {qid}: client=unknown\[127\.0\.0\.1\]:\d+")
    assert "(unknown [127.0.0.1])" in received_header(delivered)
    assert f"[{src}]" not in postfix_ident.log_text()


# --- the capability probe on identity backends ------------------------------------------------

@pytest.mark.parametrize("ident", ["xclient", "proxy-v1", "proxy-v2"])
def test_probe_learns_postfix_capabilities(ident_edge, postfix_ident, ident):
    """The STARTTLS listeners' probe connects to the same Postfix service: on a haproxy
    service it must send a PROXY header Postfix accepts (v2 LOCAL / a v1 line), and the
    capabilities it learns are Postfix's."""
    # (ident_edge waited for every probe to end, one way or the other.)
    failed = ident_edge.me.log_lines(rf"capability probe of \[backend smtp-{ident}\] failed")
    assert failed == [], failed
    for mode in ("sub", "mx"):
        lines = ident_edge.me.log_lines(
            rf"\[listener {mode}-{ident}\]: backend \[backend smtp-{ident}\] capabilities: ")
        assert lines and "SIZE 67108864" in lines[0], lines  # Postfix's message_size_limit


# --- XCLIENT details visible at Postfix ---------------------------------------------------------

def test_xclient_not_offered_to_clients(ident_edge):
    """Postfix offers XCLIENT to mailedge; mailedge never passes the offer on, before or
    after TLS, and a client's own XCLIENT is refused (never reaches Postfix)."""
    c = SMTP(ident_edge.ports["sub-xclient"], source=client_addr())
    try:
        code, pre = c.ehlo(HELO)
        assert code == 250 and b"XCLIENT" not in pre, pre
        c.starttls(context=client_context())
        code, post = c.ehlo(HELO)
        assert code == 250 and b"XCLIENT" not in post, post
        assert b"backend.example.test" in post  # Postfix's own EHLO answer
        code, reply = c.docmd("XCLIENT", "ADDR=198.51.100.66")
        assert code == 502, (code, reply)
    finally:
        c.quit()


def test_smtps_client_sees_one_greeting(ident_edge):
    """Implicit TLS + XCLIENT: the client sees exactly one 220 greeting (Postfix sends a
    new one after XCLIENT; mailedge passes exactly one), and then Postfix's EHLO."""
    c = SMTPS(ident_edge.ports["smtps-xclient"], source=client_addr())
    try:
        # smtplib read the greeting in connect(); nothing else may be pending.
        c.sock.settimeout(0.5)
        try:
            extra = c.sock.recv(4096)
        except (TimeoutError, OSError):
            extra = b""
        assert extra == b"", f"more than one greeting: {extra!r}"
        c.sock.settimeout(30)
        code, reply = c.ehlo(HELO)
        assert code == 250 and reply.startswith(b"backend.example.test"), reply
    finally:
        c.quit()


def test_xclient_not_offered_goes_on_without(mailedge_factory, postfix_ident):
    """client_identity = xclient on a Postfix service that does not offer XCLIENT to
    mailedge (not in smtpd_authorized_xclient_hosts): mailedge sends no XCLIENT, mail
    still flows, and Postfix sees mailedge's address."""
    port = alloc_port()
    mailedge_factory(render([
        ("global", [("log_level", "info")]),
        ("backend plain", [("address", f"127.0.0.1:{postfix_ident.ports['none']}"),
                           ("client_identity", "xclient")]),
        listener_section("smtps", "smtp", port, "plain", "rsa")]), "xclient-not-offered")
    tok, msg = make_message(subject="XCLIENT not offered")
    send_mail(port, "smtps", client_addr(), msg)
    postfix_ident.wait_for_message(f"<{tok}@example.test>")
    qid = queue_id_of(postfix_ident, tok)
    postfix_ident.wait_for_log(
        rf"postfix-mailedge-it/smtpd\[\d+\]: {qid}: client=unknown\[127\.0\.0\.1\]:\d+\n")


def test_no_postfix_warnings(ident_edge, postfix_ident):
    """Last in this module: Postfix logged no warning for any PROXY header or XCLIENT
    command mailedge sent (sessions and capability probes)."""
    assert postfix_warnings(postfix_ident) == []
