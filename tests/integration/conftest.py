"""Integration-test harness for mailedge: a real Postfix (SMTP backend), a real Dovecot
(IMAP/POP3 backend) and mailedge itself, all on high loopback ports, each in a private
directory under /tmp/mailedge-it-XXXXXX (kept after the run for post-mortem, removed at
the start of the next run).

Run:  /usr/bin/python3 -m pytest tests/integration -q
Env:  MAILEDGE_BIN   the daemon under test (default build/mailedge, relative to the
                     repository root). Tests that need it are skipped when it is missing.
"""

import contextlib
import itertools
import os
import sys
import tempfile
import types

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import identity, stale  # noqa: E402
from harness.configs import (backend_sections, default_config, listener_section,  # noqa: E402
                             starttls_listener_section)
from harness.dovecot import Dovecot, IMAP_PORT, POP3_PORT  # noqa: E402
from harness.mailedge import Mailedge, binary_path, ensure_certs, render  # noqa: E402
from harness.ports import FIXED_PORTS, alloc_port  # noqa: E402
from harness.recorder import RecordingBackend  # noqa: E402
from harness.postfix import Postfix, DEFAULT_PORT as POSTFIX_PORT  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "mailedge: needs the mailedge binary (MAILEDGE_BIN)")
    config.addinivalue_line("markers", "slow: large transfers or many sessions")


# --- session layout --------------------------------------------------------------------

@pytest.fixture(scope="session")
def session_dir():
    stale.cleanup_old_runs()
    d = tempfile.mkdtemp(prefix="mailedge-it-", dir="/tmp")
    os.chmod(d, 0o755)  # Postfix and Dovecot run parts of themselves as other users
    with open(os.path.join(d, "owner.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")
    stale.free_ports(FIXED_PORTS)
    yield d


# --- backends ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postfix(session_dir):
    pf = Postfix(os.path.join(session_dir, "postfix"), port=POSTFIX_PORT)
    try:
        pf.start()
    except BaseException:
        pf.stop()
        raise
    yield pf
    pf.stop()


@pytest.fixture(scope="session")
def dovecot(session_dir):
    dc = Dovecot(os.path.join(session_dir, "dovecot"), imap_port=IMAP_PORT,
                 pop3_port=POP3_PORT)
    try:
        dc.start()
    except BaseException:
        dc.stop()
        raise
    yield dc
    dc.stop()


# --- mailedge --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mailedge_bin():
    path = binary_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"mailedge binary not found at {path} (set MAILEDGE_BIN or run make)")
    ensure_certs()
    return path


_instance_seq = itertools.count(1)


def _new_instance(session_dir, config_text, name):
    wd = os.path.join(session_dir, "mailedge", f"{next(_instance_seq):03d}-{name}")
    return Mailedge(wd, config_text, name=name)


@pytest.fixture(scope="session")
def mailedge(mailedge_bin, session_dir, postfix, dovecot):
    """The long-running mailedge with the default config (smtps 21465, imaps 21993,
    pop3s 21995). Fails the run if it dies, needs SIGKILL or reports sanitizer errors."""
    me = _new_instance(session_dir, default_config(), "default")
    me.start()
    yield me
    problems = me.stop()
    if problems:
        pytest.fail(f"default mailedge: {'; '.join(problems)}\nstderr tail:\n"
                    f"{me.log_text()[-4000:]}", pytrace=False)


@pytest.fixture
def mailedge_factory(mailedge_bin, session_dir):
    """start(config_text, name) -> a started Mailedge, stopped and checked at the end of
    the test."""
    started = []

    def start(config_text, name="custom"):
        me = _new_instance(session_dir, config_text, name)
        started.append(me)
        me.start()
        return me

    yield start
    problems = []
    for me in started:
        for p in me.stop():
            problems.append(f"mailedge {me.name} ({me.dir}): {p}\nstderr tail:\n"
                            f"{me.log_text()[-3000:]}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def config_dir(session_dir):
    """A fresh directory for config files written by a test."""
    d = tempfile.mkdtemp(prefix="conf-", dir=session_dir)
    os.chmod(d, 0o755)
    return d


# --- STARTTLS listeners (issue 3) ---------------------------------------------------------

PROTOS = ("smtp", "imap", "pop3")
CERTKIND = {"smtp": "rsa", "imap": "ecdsa", "pop3": "pem"}


@contextlib.contextmanager
def _checked_instance(session_dir, text, name, probed=()):
    """A started Mailedge, stopped and checked (sanitizers, exit status) afterwards.
    probed: listener names whose capability probe must have succeeded before use."""
    me = _new_instance(session_dir, text, name)
    me.start()
    try:
        for lname in probed:
            me.wait_for_log(rf"\[listener {lname}\]: backend \[backend \S+\] capabilities: ")
    except BaseException:
        me.stop()
        raise
    yield me
    problems = me.stop()
    if problems:
        pytest.fail(f"mailedge {name} ({me.dir}): {'; '.join(problems)}\nstderr tail:\n"
                    f"{me.log_text()[-4000:]}", pytrace=False)


@pytest.fixture(scope="session")
def starttls_edge(mailedge_bin, session_dir, postfix, dovecot):
    """One mailedge with STARTTLS listeners in front of the real Postfix and Dovecot:
    ports["smtp"|"imap"|"pop3"]            security_level default (encrypt), probed
    ports["smtp-may"|"imap-may"|"pop3-may"] security_level = may, probed
    ports["smtp-static"|...]                encrypt, static capabilities (no probe)
    Host name in mailedge's own replies: edge.example.test."""
    backend = {"smtp": "postfix", "imap": "imap", "pop3": "pop3"}
    static = {"smtp": "PIPELINING, SIZE 1000000, 8BITMIME",
              "imap": "IMAP4rev1, ID, IDLE",
              "pop3": "TOP, UIDL, RESP-CODES"}
    ports, sections, probed = {}, backend_sections(), []
    for p in PROTOS:
        for kind, extra in (("", {}), ("-may", {"security_level": "may"}),
                            ("-static", {"capabilities": static[p]})):
            name = p + kind
            ports[name] = alloc_port()
            sections.append(starttls_listener_section(name, p, ports[name], backend[p],
                                                      CERTKIND[p], **extra))
            if kind != "-static":
                probed.append(name)
    with _checked_instance(session_dir, render(sections), "starttls-real",
                           probed) as me:
        yield types.SimpleNamespace(me=me, ports=ports, static=static)


@pytest.fixture(scope="session")
def recorders():
    """Recording backends (harness/recorder.py), one per protocol, for the session."""
    recs = {}
    try:
        for p in PROTOS:
            recs[p] = RecordingBackend(p, port=alloc_port()).start()
        yield recs
    finally:
        for r in recs.values():
            r.stop()


@pytest.fixture(scope="session")
def recording_edge(mailedge_bin, session_dir, recorders):
    """One mailedge in front of the recording backends:
    ports["smtp"|"imap"|"pop3"]          STARTTLS, security_level = encrypt, probed
    ports["smtp-may"|...]                STARTTLS, security_level = may, probed
    ports["smtp-implicit"|...]           implicit TLS"""
    ports, probed = {}, []
    sections = [("global", [("log_level", "info")])]
    for p in PROTOS:
        sections.append((f"backend rec-{p}", [("address", recorders[p].address),
                                              ("connect_timeout", "5s")]))
    for p in PROTOS:
        for kind in ("", "-may", "-implicit"):
            name = p + kind
            ports[name] = alloc_port()
            if kind == "-implicit":
                sections.append(listener_section(name, p, ports[name], f"rec-{p}",
                                                 CERTKIND[p]))
            else:
                sections.append(starttls_listener_section(
                    name, p, ports[name], f"rec-{p}", CERTKIND[p],
                    security_level="may" if kind else "encrypt"))
                probed.append(name)
    with _checked_instance(session_dir, render(sections), "starttls-recorder",
                           probed) as me:
        yield types.SimpleNamespace(me=me, ports=ports, recorders=recorders)


# --- client identity (issue 4) --------------------------------------------------------------

@pytest.fixture(scope="session")
def postfix_ident(session_dir):
    """A second Postfix (DIR/postfix-ident) with one smtpd service per identity dialect,
    each with its own syslog_name (see harness/identity.py POSTFIX_*):
    ports["none"]     plain smtpd: sees mailedge's own address
    ports["xclient"]  smtpd_authorized_xclient_hosts = mailedge's address
    ports["haproxy"]  smtpd_upstream_proxy_protocol = haproxy (PROXY v1 and v2)"""
    ports = {"none": alloc_port(), "xclient": alloc_port(), "haproxy": alloc_port()}
    pf = Postfix(os.path.join(session_dir, "postfix-ident"), port=ports["none"],
                 extra_services=[(ports["xclient"], identity.POSTFIX_XCLIENT_SERVICE),
                                 (ports["haproxy"], identity.POSTFIX_HAPROXY_SERVICE)],
                 extra_main=identity.POSTFIX_IDENT_MAIN)
    pf.ports = ports
    try:
        pf.start()
    except BaseException:
        pf.stop()
        raise
    yield pf
    pf.stop()


def _ident_dovecot(session_dir, name, extra):
    ports = {"imap": alloc_port(), "pop3": alloc_port()}
    more = {}
    if "{imap_haproxy}" in extra:
        more = {"imap_haproxy": alloc_port(), "pop3_haproxy": alloc_port()}
    dc = Dovecot(os.path.join(session_dir, name), imap_port=ports["imap"],
                 pop3_port=ports["pop3"], extra_conf=extra.format(**more),
                 extra_ports=list(more.values()))
    ports.update(more)
    dc.ports = ports
    try:
        dc.start()
    except BaseException:
        dc.stop()
        raise
    return dc


@pytest.fixture(scope="session")
def dovecot_haproxy(session_dir):
    """A second Dovecot (DIR/dovecot-haproxy): haproxy_trusted_networks = mailedge's
    address; ports["imap_haproxy"|"pop3_haproxy"] take PROXY v1/v2 headers,
    ports["imap"|"pop3"] are plain (client_identity = none)."""
    dc = _ident_dovecot(session_dir, "dovecot-haproxy", identity.DOVECOT_HAPROXY_CONF)
    yield dc
    dc.stop()


@pytest.fixture(scope="session")
def dovecot_trusted(session_dir):
    """A third Dovecot (DIR/dovecot-trusted): login_trusted_networks = mailedge's
    address, so IMAP ID x-originating-* and POP3 XCLIENT from mailedge are believed."""
    dc = _ident_dovecot(session_dir, "dovecot-trusted", identity.DOVECOT_TRUSTED_CONF)
    yield dc
    dc.stop()


@pytest.fixture(scope="session")
def ident_edge(mailedge_bin, session_dir, postfix_ident, dovecot_haproxy, dovecot_trusted):
    """One mailedge in front of postfix_ident, dovecot_haproxy and dovecot_trusted with a
    listener per (protocol, TLS mode, client_identity); see identity.edge_sections().
    ports[name], e.g. ports["smtps-xclient"], ports["imap-may-proxy-v2"]."""
    sections, ports, probed = identity.edge_sections(postfix_ident, dovecot_haproxy,
                                                     dovecot_trusted, alloc_port)
    with _checked_instance(session_dir, render(sections), "identity") as me:
        # Sessions start once every probe has ended, either way: whether it succeeded
        # is a test of its own (test_identity_*.py test_probe_*).
        for lname in probed:
            me.wait_for_log(rf"\[listener {lname}\]: (backend \[backend \S+\] "
                            rf"capabilities: |capability probe of .* failed)")
        yield types.SimpleNamespace(me=me, ports=ports, probed=probed)


@pytest.fixture(scope="session")
def identity_recorders():
    """Recording backends for client identity: recs[(proto, ident)] with ident
    "proxy-v1"/"proxy-v2" (proxy=True: read a PROXY header first) or "xclient" (smtp,
    pop3) / "imap-id" (imap) (identity=True: answer XCLIENT/ID as Postfix/Dovecot do)."""
    recs = {}
    try:
        for p in PROTOS:
            for ident in ("proxy-v1", "proxy-v2"):
                recs[(p, ident)] = RecordingBackend(p, port=alloc_port(), proxy=True).start()
            ident = "imap-id" if p == "imap" else "xclient"
            recs[(p, ident)] = RecordingBackend(p, port=alloc_port(), identity=True).start()
        yield recs
    finally:
        for r in recs.values():
            r.stop()


@pytest.fixture(scope="session")
def identity_recording_edge(mailedge_bin, session_dir, identity_recorders):
    """One mailedge in front of identity_recorders: listeners PROTO-MODE-IDENT with MODE
    implicit | starttls (encrypt) | may, e.g. ports["smtp-may-xclient"]."""
    ports, probed = {}, []
    sections = [("global", [("log_level", "info")])]
    for (p, ident), rec in identity_recorders.items():
        sections.append((f"backend rec-{p}-{ident}",
                         [("address", rec.address), ("connect_timeout", "5s"),
                          ("client_identity", ident)]))
    for (p, ident) in identity_recorders:
        for mode in ("implicit", "starttls", "may"):
            name = f"{p}-{mode}-{ident}"
            ports[name] = alloc_port()
            if mode == "implicit":
                sections.append(listener_section(name, p, ports[name], f"rec-{p}-{ident}",
                                                 "rsa"))
            else:
                sections.append(starttls_listener_section(
                    name, p, ports[name], f"rec-{p}-{ident}", "rsa",
                    security_level="may" if mode == "may" else "encrypt"))
                probed.append(name)
    before = {k: r.mark() for k, r in identity_recorders.items()}
    with _checked_instance(session_dir, render(sections), "identity-recorder") as me:
        for lname in probed:
            me.wait_for_log(rf"\[listener {lname}\]: (backend \[backend \S+\] "
                            rf"capabilities: |capability probe of .* failed)")
        # Connections during start-up: the capability probes (nothing else connects).
        probes = {k: r.since(before[k]) for k, r in identity_recorders.items()}
        yield types.SimpleNamespace(me=me, ports=ports, recorders=identity_recorders,
                                    probes=probes)


@pytest.fixture(scope="session")
def lb_edge(mailedge_bin, session_dir, postfix_ident, dovecot_haproxy, dovecot_trusted,
            identity_recorders):
    """One mailedge whose listeners take a PROXY header from a load balancer in front
    (accept_proxy = 127.0.0.0/8, ::1/128), in front of the identity backends:
    lb-smtps-xclient, lb-sub-proxy-v2, lb-mx-xclient, lb-imaps-proxy-v2,
    lb-imap-imap-id, lb-pop3s-xclient, lb-pop3-proxy-v2, lb-imaps-rec (recorder,
    proxy-v2); lb-imaps-short / lb-sub-short (proxy_timeout = 2s, identity none);
    lb-imaps-untrusted (accept_proxy = 192.0.2.0/24 only)."""
    trusted = "127.0.0.0/8, ::1/128"
    spec = [  # name, protocol, tls mode, backend, extra keys
        ("lb-smtps-xclient", "smtp", "implicit", "smtp-xclient", {}),
        ("lb-sub-proxy-v2", "smtp", "encrypt", "smtp-proxy-v2", {}),
        ("lb-mx-xclient", "smtp", "may", "smtp-xclient", {}),
        ("lb-imaps-proxy-v2", "imap", "implicit", "imap-proxy-v2", {}),
        ("lb-imap-imap-id", "imap", "encrypt", "imap-imap-id", {}),
        ("lb-pop3s-xclient", "pop3", "implicit", "pop3-xclient", {}),
        ("lb-pop3-proxy-v2", "pop3", "encrypt", "pop3-proxy-v2", {}),
        ("lb-imaps-rec", "imap", "implicit", "rec-imap-proxy-v2", {}),
        ("lb-imaps-short", "imap", "implicit", "imap-none", {"proxy_timeout": "2s"}),
        ("lb-sub-short", "smtp", "encrypt", "smtp-none", {"proxy_timeout": "2s"}),
        ("lb-imaps-untrusted", "imap", "implicit", "imap-none",
         {"accept_proxy": "192.0.2.0/24"}),
    ]
    sections = [("global", [("log_level", "info")])]
    sections += identity.backend_sections(postfix_ident, dovecot_haproxy, dovecot_trusted)
    sections.append(("backend rec-imap-proxy-v2",
                     [("address", identity_recorders[("imap", "proxy-v2")].address),
                      ("client_identity", "proxy-v2")]))
    ports, probed = {}, []
    for name, proto, mode, backend, extra in spec:
        ports[name] = alloc_port()
        keys = {"accept_proxy": trusted, **extra}
        if mode == "implicit":
            sections.append(listener_section(name, proto, ports[name], backend, "rsa",
                                             **keys))
        else:
            sections.append(starttls_listener_section(name, proto, ports[name], backend,
                                                      "rsa", security_level=mode, **keys))
            probed.append(name)
    with _checked_instance(session_dir, render(sections), "load-balanced") as me:
        for lname in probed:
            me.wait_for_log(rf"\[listener {lname}\]: (backend \[backend \S+\] "
                            rf"capabilities: |capability probe of .* failed)")
        yield types.SimpleNamespace(me=me, ports=ports,
                                    recorder=identity_recorders[("imap", "proxy-v2")])
