"""mailedge configuration texts used by the tests (format: conf/mailedge.ini)."""

from .dovecot import IMAP_PORT, POP3_PORT
from .mailedge import cert, render
from .ports import IMAPS_PORT, POP3S_PORT, SMTPS_PORT
from .postfix import DEFAULT_PORT as POSTFIX_PORT


def backend_sections(imap=None, pop3=None, smtp=None, connect_timeout="5s"):
    return [
        ("global", [("log_level", "info")]),
        ("backend postfix", [("address", smtp or f"127.0.0.1:{POSTFIX_PORT}"),
                             ("connect_timeout", connect_timeout)]),
        ("backend imap", [("address", imap or f"127.0.0.1:{IMAP_PORT}")]),
        ("backend pop3", [("address", pop3 or f"127.0.0.1:{POP3_PORT}")]),
    ]


def listener_section(name, protocol, port, backend, certkind="rsa", **extra):
    items = [("protocol", protocol), ("tls", "implicit"), ("listen", f"127.0.0.1:{port}"),
             ("backend", backend)]
    if certkind == "rsa":
        items += [("cert", cert("server-rsa.crt")), ("key", cert("server-rsa.key"))]
    elif certkind == "ecdsa":
        items += [("cert", cert("server-ecdsa.crt")), ("key", cert("server-ecdsa.key"))]
    elif certkind == "pem":
        items += [("cert", cert("server-rsa.pem"))]
    items += list(extra.items())
    return (f"listener {name}", items)


def default_config(smtps=SMTPS_PORT, imaps=IMAPS_PORT, pop3s=POP3S_PORT, **backend_kw):
    """The configuration from the brief: smtps (RSA), imaps (ECDSA), pop3s (combined
    PEM)."""
    sections = backend_sections(**backend_kw)
    sections.append(listener_section("smtps", "smtp", smtps, "postfix", "rsa",
                                     handshake_timeout="5s"))
    sections.append(listener_section("imaps", "imap", imaps, "imap", "ecdsa"))
    sections.append(listener_section("pop3s", "pop3", pop3s, "pop3", "pem"))
    return render(sections)


# --- STARTTLS listeners (issue 3) -------------------------------------------------------

EDGE_HOSTNAME = "edge.example.test"


def starttls_listener_section(name, protocol, port, backend, certkind="rsa",
                              security_level=None, hostname=EDGE_HOSTNAME, **extra):
    """A `tls = starttls` listener. security_level None leaves the default (encrypt);
    extra keys: capabilities, capabilities_refresh, dialogue_timeout, greeting, ..."""
    header, items = listener_section(name, protocol, port, backend, certkind)
    items = [(k, "starttls" if k == "tls" else v) for k, v in items]
    items += [("security_level", security_level), ("hostname", hostname)]
    items += list(extra.items())
    return (header, items)
