"""Loopback ports used by the integration tests (all high, all on 127.0.0.1)."""

from . import procs
from .dovecot import IMAP_PORT, POP3_PORT
from .postfix import DEFAULT_PORT as POSTFIX_PORT

# mailedge's default listeners (the session-wide instance).
SMTPS_PORT = 21465
IMAPS_PORT = 21993
POP3S_PORT = 21995
FIXED_PORTS = [POSTFIX_PORT, IMAP_PORT, POP3_PORT, SMTPS_PORT, IMAPS_PORT, POP3S_PORT]
# Ports handed out to per-test mailedge instances, and ports expected to be closed.
DYNAMIC_PORTS = range(21500, 21900)
CLOSED_PORTS = range(22900, 23000)

_port_iter = iter(DYNAMIC_PORTS)


def alloc_port():
    """Next free port from the per-test range (bounded by the range size)."""
    for port in _port_iter:
        if procs.port_bindable(port) and not procs.port_accepts(port):
            return port
    raise RuntimeError("ran out of test ports")


def closed_port():
    """A loopback port on which nothing listens (connect gets ECONNREFUSED)."""
    for port in CLOSED_PORTS:
        if procs.port_bindable(port) and not procs.port_accepts(port):
            return port
    raise RuntimeError("no closed port found")
