"""Client identity (issue 4): PROXY protocol headers (HAProxy's proxy-protocol.txt) built
and parsed in Python, loopback client addresses, and stdlib clients that either bind a
distinct 127.0.0.x address or act as an L4 load balancer (write a PROXY header on the
socket, then speak TLS/STARTTLS over the same socket).

Only loopback addresses are ever connected to or bound; addresses such as 203.0.113.7
(TEST-NET-3) only ever appear INSIDE a PROXY header.
"""

import imaplib
import itertools
import poplib
import smtplib
import socket
import struct
import time

from .tlsutil import HOST, client_context

TIMEOUT = 30
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

# PP2 types and SSL sub-types (proxy-protocol.txt, 2.2)
PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_SUBTYPE_SSL_SIG_ALG = 0x24
PP2_SUBTYPE_SSL_KEY_ALG = 0x25
PP2_TYPE_NETNS = 0x30
PP2_CLIENT_SSL = 0x01
PP2_CLIENT_CERT_CONN = 0x02
PP2_CLIENT_CERT_SESS = 0x04

# --- loopback client addresses -----------------------------------------------------------

# 127.0.0.0/8 is all on lo: binding 127.0.0.N needs no setup. Each call hands out a fresh
# address so that a backend's log line can be attributed to exactly one test session.
_addr_seq = itertools.count(20)


def client_addr():
    n = next(_addr_seq)
    if n > 250:
        raise RuntimeError("ran out of 127.0.0.x client addresses")
    return f"127.0.0.{n}"


# TEST-NET addresses "behind" the test load balancer: a distinct one per call too.
_lb_seq = itertools.count(7)


def lb_client_addr():
    n = next(_lb_seq)
    if n > 254:
        raise RuntimeError("ran out of 203.0.113.x addresses")
    return f"203.0.113.{n}"


# --- building headers ----------------------------------------------------------------------

def v1_header(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def tlv(t, value):
    return bytes([t]) + struct.pack("!H", len(value)) + value


def v2_header(src, dst, sport, dport, tlvs=b"", command=1, length=None):
    """A v2 header (PROXY command unless command=0 LOCAL). length overrides the length
    field (to build oversized/inconsistent headers)."""
    if ":" in src:
        fam = 0x21
        addr = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam = 0x11
        addr = socket.inet_aton(src) + socket.inet_aton(dst)
    body = addr + struct.pack("!HH", sport, dport) + tlvs
    n = len(body) if length is None else length
    return V2_SIG + bytes([0x20 | command, fam]) + struct.pack("!H", n) + body


def v2_local():
    return V2_SIG + b"\x20\x00\x00\x00"


# --- parsing headers (what mailedge sent) ------------------------------------------------

class ProxyHeader:
    """A parsed PROXY header. version 1|2; command "PROXY"|"LOCAL" (v1 UNKNOWN = LOCAL);
    src, dst, sport, dport; tlvs: [(type, value)]; ssl: None or dict(client=, verify=,
    subs=[(type, value)]); length: total bytes."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def tlv(self, t):
        vals = [v for k, v in self.tlvs if k == t]
        return vals[0] if vals else None

    def ssl_sub(self, t):
        if self.ssl is None:
            return None
        vals = [v for k, v in self.ssl["subs"] if k == t]
        return vals[0] if vals else None

    def __repr__(self):
        return f"<ProxyHeader {self.__dict__}>"


def _parse_tlvs(data):
    out = []
    i = 0
    while i < len(data):
        assert i + 3 <= len(data), f"truncated TLV header at {i}: {data!r}"
        t = data[i]
        n = struct.unpack("!H", data[i + 1:i + 3])[0]
        assert i + 3 + n <= len(data), f"TLV {t:#x} length {n} overruns: {data!r}"
        out.append((t, data[i + 3:i + 3 + n]))
        i += 3 + n
    return out


def parse_header(data):
    """Parse exactly one header that must make up all of `data` (raises AssertionError
    with the reason otherwise)."""
    if data.startswith(b"PROXY "):
        assert data.endswith(b"\r\n") and data.count(b"\r\n") == 1, data
        assert len(data) <= 107, f"v1 header longer than 107 bytes: {data!r}"
        parts = data[:-2].decode("ascii").split(" ")
        if parts[1] == "UNKNOWN":
            return ProxyHeader(version=1, command="LOCAL", src=None, dst=None, sport=None,
                               dport=None, tlvs=[], ssl=None, length=len(data))
        assert len(parts) == 6 and parts[1] in ("TCP4", "TCP6"), data
        fam = socket.AF_INET if parts[1] == "TCP4" else socket.AF_INET6
        for a in parts[2:4]:
            socket.inet_pton(fam, a)  # raises on a bad address
        for p in parts[4:6]:
            assert p.isdigit() and str(int(p)) == p and 0 <= int(p) <= 65535, data
        return ProxyHeader(version=1, command="PROXY", family=parts[1], src=parts[2],
                           dst=parts[3], sport=int(parts[4]), dport=int(parts[5]), tlvs=[],
                           ssl=None, length=len(data))
    assert data.startswith(V2_SIG), f"no PROXY signature: {data[:32]!r}"
    assert len(data) >= 16, data
    ver_cmd, fam = data[12], data[13]
    n = struct.unpack("!H", data[14:16])[0]
    assert ver_cmd >> 4 == 2, f"version nibble {ver_cmd >> 4}"
    assert len(data) == 16 + n, f"length field {n} but {len(data) - 16} bytes follow"
    body = data[16:]
    command = {0: "LOCAL", 1: "PROXY"}[ver_cmd & 0xF]
    src = dst = sport = dport = None
    if fam == 0x11:
        assert n >= 12, n
        src, dst = socket.inet_ntoa(body[0:4]), socket.inet_ntoa(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
        rest = body[12:]
    elif fam == 0x21:
        assert n >= 36, n
        src = socket.inet_ntop(socket.AF_INET6, body[0:16])
        dst = socket.inet_ntop(socket.AF_INET6, body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
        rest = body[36:]
    else:
        assert fam == 0x00, f"unexpected family/transport byte {fam:#x}"
        rest = body
    tlvs = _parse_tlvs(rest)
    ssl = None
    for t, v in tlvs:
        if t == PP2_TYPE_SSL:
            assert len(v) >= 5, v
            ssl = {"client": v[0], "verify": struct.unpack("!I", v[1:5])[0],
                   "subs": _parse_tlvs(v[5:])}
    return ProxyHeader(version=2, command=command, family=fam, src=src, dst=dst,
                       sport=sport, dport=dport, tlvs=tlvs, ssl=ssl, length=len(data))


# --- clients --------------------------------------------------------------------------------

def open_socket(port, source=None, header=None, timeout=TIMEOUT):
    """TCP to 127.0.0.1:port, from `source` (a 127.0.0.x address) when given, with
    `header` (a PROXY header) written first when given. A list of byte strings is
    written piece by piece, with a short pause between, so that each piece arrives in
    a segment of its own."""
    s = socket.create_connection((HOST, port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(header, (list, tuple)):
            for i, piece in enumerate(header):
                if i:
                    time.sleep(0.02)
                s.sendall(piece)
        elif header:
            s.sendall(header)
    except BaseException:
        s.close()
        raise
    return s


class SMTP(smtplib.SMTP):
    """Plaintext SMTP (for STARTTLS listeners) from a chosen source / behind a header."""

    def __init__(self, port, source=None, header=None, timeout=TIMEOUT):
        self._src, self._hdr = source, header
        super().__init__(HOST, port, timeout=timeout)

    def _get_socket(self, host, port, timeout):
        return open_socket(port, self._src, self._hdr, timeout)


class SMTPS(smtplib.SMTP_SSL):
    def __init__(self, port, source=None, header=None, ctx=None, sni=None, timeout=TIMEOUT):
        self._src, self._hdr, self._sni = source, header, sni
        super().__init__(HOST, port, context=ctx or client_context(), timeout=timeout)

    def _get_socket(self, host, port, timeout):
        s = open_socket(port, self._src, self._hdr, timeout)
        return self.context.wrap_socket(s, server_hostname=self._sni or HOST)


class IMAP(imaplib.IMAP4):
    def __init__(self, port, source=None, header=None, timeout=TIMEOUT):
        self._src, self._hdr = source, header
        super().__init__(HOST, port, timeout=timeout)

    def _create_socket(self, timeout):
        return open_socket(self.port, self._src, self._hdr, timeout)


class IMAPS(imaplib.IMAP4_SSL):
    def __init__(self, port, source=None, header=None, ctx=None, sni=None, timeout=TIMEOUT):
        self._src, self._hdr, self._sni = source, header, sni
        super().__init__(HOST, port, ssl_context=ctx or client_context(), timeout=timeout)

    def _create_socket(self, timeout):
        s = open_socket(self.port, self._src, self._hdr, timeout)
        return self.ssl_context.wrap_socket(s, server_hostname=self._sni or HOST)


class POP3(poplib.POP3):
    def __init__(self, port, source=None, header=None, timeout=TIMEOUT):
        self._src, self._hdr = source, header
        super().__init__(HOST, port, timeout=timeout)

    def _create_socket(self, timeout):
        return open_socket(self.port, self._src, self._hdr, timeout)


class POP3S(poplib.POP3_SSL):
    def __init__(self, port, source=None, header=None, ctx=None, sni=None, timeout=TIMEOUT):
        self._src, self._hdr, self._sni = source, header, sni
        super().__init__(HOST, port, context=ctx or client_context(), timeout=timeout)

    def _create_socket(self, timeout):
        s = open_socket(self.port, self._src, self._hdr, timeout)
        return self.context.wrap_socket(s, server_hostname=self._sni or HOST)


def local_port(client):
    """The client's own TCP port (smtplib/imaplib/poplib object)."""
    sock = getattr(client, "sock", None)
    return sock.getsockname()[1]


# --- backend configurations (the recipes the README documents) ----------------------------

# mailedge connects to its backends from 127.0.0.1 here: that is "mailedge's address" in
# every recipe below (in production: the address(es) mailedge connects from).
EDGE_NET = "127.0.0.1/32"

# Postfix, main.cf. inet_protocols: Postfix 3.7 refuses an IPv6 client address in
# XCLIENT ("501 5.5.4 Bad ADDR syntax") and in a PROXY header ("warning: haproxy read:
# bad or missing protocol type", 421) unless IPv6 is enabled, even if it only listens
# on IPv4 (part of the recipe when clients may use IPv6). The other two are for the
# tests only: no reverse DNS for the TEST-NET addresses, and ports in the log so a
# session can be matched exactly.
POSTFIX_IDENT_MAIN = """\
inet_protocols = all
smtpd_peername_lookup = no
smtpd_client_port_logging = yes
"""
# master.cf -o overrides per service (syslog_name only to tell the services apart).
POSTFIX_XCLIENT_SERVICE = [("syslog_name", "postfix-ident/xclient"),
                           ("smtpd_authorized_xclient_hosts", EDGE_NET)]
POSTFIX_HAPROXY_SERVICE = [("syslog_name", "postfix-ident/haproxy"),
                           ("smtpd_upstream_proxy_protocol", "haproxy")]

# Dovecot: login_log_format_elements is the default plus the client's port and
# local_name (the SNI name that PROXY v2 carries in PP2_TYPE_AUTHORITY), for the tests.
DOVECOT_LOG_FORMAT = ("login_log_format_elements = user=<%u> method=%m rip=%r "
                      "rport=%{{rport}} lip=%l mpid=%e %c session=<%{{session}}> "
                      "local_name=<%{{local_name}}>\n")
DOVECOT_HAPROXY_CONF = f"""\
haproxy_trusted_networks = {EDGE_NET}
{DOVECOT_LOG_FORMAT}service imap-login {{{{
  inet_listener imap-haproxy {{{{
    address = 127.0.0.1
    port = {{imap_haproxy}}
    haproxy = yes
  }}}}
}}}}
service pop3-login {{{{
  inet_listener pop3-haproxy {{{{
    address = 127.0.0.1
    port = {{pop3_haproxy}}
    haproxy = yes
  }}}}
}}}}
"""
DOVECOT_TRUSTED_CONF = f"""\
login_trusted_networks = {EDGE_NET}
{DOVECOT_LOG_FORMAT}"""

# Identity dialects per protocol in the identity mailedge (ident_edge fixture).
SMTP_IDENTS = ("none", "xclient", "proxy-v1", "proxy-v2")
IMAP_IDENTS = ("none", "proxy-v1", "proxy-v2", "imap-id")
POP3_IDENTS = ("none", "proxy-v2", "xclient")
# Listener name prefixes: implicit TLS, STARTTLS (encrypt), STARTTLS (may).
MODES = {"smtp": ("smtps", "sub", "mx"), "imap": ("imaps", "imap", "imap-may"),
         "pop3": ("pop3s", "pop3", "pop3-may")}


def backend_ports(pf, dh, dt):
    """{(proto, ident): port} of the real backends for each identity dialect."""
    return {
        ("smtp", "none"): pf.ports["none"], ("smtp", "xclient"): pf.ports["xclient"],
        ("smtp", "proxy-v1"): pf.ports["haproxy"], ("smtp", "proxy-v2"): pf.ports["haproxy"],
        ("imap", "none"): dh.ports["imap"], ("imap", "proxy-v1"): dh.ports["imap_haproxy"],
        ("imap", "proxy-v2"): dh.ports["imap_haproxy"], ("imap", "imap-id"): dt.ports["imap"],
        ("pop3", "none"): dh.ports["pop3"], ("pop3", "proxy-v2"): dh.ports["pop3_haproxy"],
        ("pop3", "xclient"): dt.ports["pop3"],
    }


def backend_sections(pf, dh, dt):
    """[backend PROTO-IDENT] sections for the real backends, e.g. smtp-xclient."""
    return [(f"backend {proto}-{ident}",
             [("address", f"127.0.0.1:{port}"), ("connect_timeout", "5s"),
              ("client_identity", ident)])
            for (proto, ident), port in backend_ports(pf, dh, dt).items()]


def edge_sections(pf, dh, dt, alloc):
    """mailedge config sections for ident_edge: backends named PROTO-IDENT, listeners
    MODE-IDENT. Returns (sections, ports, probed listener names)."""
    from .configs import listener_section, starttls_listener_section
    where = backend_ports(pf, dh, dt)
    sections = [("global", [("log_level", "info")])] + backend_sections(pf, dh, dt)
    ports, probed = {}, []
    for (proto, ident) in where:
        implicit, starttls, may = MODES[proto]
        for mode in (implicit, starttls, may):
            name = f"{mode}-{ident}"
            ports[name] = alloc()
            if mode == implicit:
                sections.append(listener_section(name, proto, ports[name],
                                                 f"{proto}-{ident}", "rsa"))
            else:
                sections.append(starttls_listener_section(
                    name, proto, ports[name], f"{proto}-{ident}", "rsa",
                    security_level="may" if mode == may else "encrypt"))
                probed.append(name)
    return sections, ports, probed
