"""TLS client helpers: verified contexts, raw sessions that tell a clean close
(close_notify) from a bare TCP close, hand-made ClientHellos for protocol versions and
cipher suites the local OpenSSL will not offer any more, and openssl s_client."""

import os
import socket
import ssl
import struct
import subprocess
import time

from .mailedge import cert

HOST = "127.0.0.1"


def client_context(min_version=None, max_version=None, strict_eof=False):
    """Context verifying the server against the example CA (hostname = 127.0.0.1,
    matched against the certificates' IP SAN)."""
    ctx = ssl.create_default_context(cafile=cert("ca.crt"))
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if strict_eof and hasattr(ssl, "OP_IGNORE_UNEXPECTED_EOF"):
        # Make a TCP close without close_notify an error instead of a quiet EOF.
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    return ctx


def tls_connect(port, ctx=None, timeout=15, strict_eof=True):
    ctx = ctx or client_context(strict_eof=strict_eof)
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=HOST, suppress_ragged_eofs=False)
    except BaseException:
        raw.close()
        raise


def read_until_close(sock, timeout=20, limit=1 << 20):
    """Read until the peer closes. Returns (data, how): how is "close_notify" (TLS
    clean close), "eof" (TCP FIN without close_notify), "reset", "timeout" or "limit"."""
    deadline = time.monotonic() + timeout
    chunks, total = [], 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), "timeout"
        sock.settimeout(remaining)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return b"".join(chunks), "timeout"
        except ssl.SSLEOFError:
            return b"".join(chunks), "eof"
        except ssl.SSLError as e:
            if "UNEXPECTED_EOF" in str(e) or "EOF occurred" in str(e):
                return b"".join(chunks), "eof"
            raise
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not d:
            if isinstance(sock, ssl.SSLSocket):
                return b"".join(chunks), "close_notify"
            return b"".join(chunks), "eof"
        chunks.append(d)
        total += len(d)
        if total >= limit:
            return b"".join(chunks), "limit"


def read_line(sock, timeout=15, limit=65536):
    """Read one CRLF-terminated line (bytes, with CRLF). Bounded."""
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\r\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete line within {timeout}s, got {buf!r}")
        sock.settimeout(remaining)
        d = sock.recv(1)
        if not d:
            raise EOFError(f"connection closed after {buf!r}")
        buf += d
        if len(buf) > limit:
            raise ValueError("line too long")
    return buf


def wait_closed(sock, timeout=20):
    """For a plain TCP socket: wait until the peer closes or resets it. Returns what
    was received and "eof"/"reset"/"timeout"."""
    return read_until_close(sock, timeout=timeout)


# --- hand-made ClientHellos ------------------------------------------------------------

# A few IANA cipher suite numbers.
SUITES = {
    "TLS_RSA_WITH_NULL_SHA": 0x0002,
    "TLS_RSA_WITH_NULL_SHA256": 0x003B,
    "TLS_ECDHE_RSA_WITH_NULL_SHA": 0xC010,
    "TLS_ECDHE_ECDSA_WITH_NULL_SHA": 0xC006,
    "TLS_RSA_EXPORT_WITH_RC4_40_MD5": 0x0003,
    "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA": 0x0008,
    "TLS_RSA_WITH_RC4_128_SHA": 0x0005,
    "TLS_RSA_WITH_RC4_128_MD5": 0x0004,
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": 0xC011,
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": 0xC007,
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": 0x000A,
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": 0xC012,
    "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA": 0xC008,
    "TLS_RSA_WITH_DES_CBC_SHA": 0x0009,
    "TLS_DH_anon_WITH_AES_128_GCM_SHA256": 0x00A6,
    "TLS_DH_anon_WITH_AES_128_CBC_SHA": 0x0034,
    "TLS_ECDH_anon_WITH_AES_128_CBC_SHA": 0xC018,
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": 0xC013,
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384": 0xC028,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": 0xC009,
    "TLS_RSA_WITH_AES_128_CBC_SHA": 0x002F,
    "TLS_RSA_WITH_AES_128_GCM_SHA256": 0x009C,
    "TLS_RSA_WITH_AES_256_GCM_SHA384": 0x009D,
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": 0xC02F,
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": 0xC02B,
}

VERSIONS = {"SSLv3": 0x0300, "TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303}


def _ext(ext_type, data):
    return struct.pack("!HH", ext_type, len(data)) + data


def client_hello(suites, version=0x0303, record_version=0x0301, sni=None):
    """A TLS ClientHello record offering exactly `suites` (list of ints) at
    client_version `version` (no supported_versions extension, so TLS 1.3 is never
    offered)."""
    body = struct.pack("!H", version) + os.urandom(32) + b"\x00"
    body += struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
    body += b"\x01\x00"  # compression: null
    exts = b""
    if version >= 0x0301:
        groups = [0x001D, 0x0017, 0x0018]  # x25519, secp256r1, secp384r1
        exts += _ext(0x000A, struct.pack("!H", 2 * len(groups)) +
                     b"".join(struct.pack("!H", g) for g in groups))
        exts += _ext(0x000B, b"\x01\x00")  # ec_point_formats: uncompressed
        exts += _ext(0xFF01, b"\x00")  # renegotiation_info (empty)
        if sni:
            name = sni.encode()
            entry = b"\x00" + struct.pack("!H", len(name)) + name
            exts += _ext(0x0000, struct.pack("!H", len(entry)) + entry)
    if version >= 0x0303:
        sigalgs = [0x0403, 0x0503, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601,
                   0x0201, 0x0203]
        exts += _ext(0x000D, struct.pack("!H", 2 * len(sigalgs)) +
                     b"".join(struct.pack("!H", a) for a in sigalgs))
    if exts:
        body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16" + struct.pack("!HH", record_version, len(hs)) + hs


def sslv2_client_hello(version=0x0002):
    """An SSLv2(-compatible) CLIENT-HELLO offering SSLv2 ciphers and old suites."""
    specs = [0x010080, 0x020080, 0x030080, 0x0700C0, 0x060040,  # SSLv2 kinds
             0x00000A, 0x000005, 0x00002F]  # TLS suites in v2 form
    spec_bytes = b"".join(struct.pack("!I", s)[1:] for s in specs)
    challenge = os.urandom(16)
    body = b"\x01" + struct.pack("!HHHH", version, len(spec_bytes), 0, len(challenge))
    body += spec_bytes + challenge
    return struct.pack("!H", 0x8000 | len(body)) + body


def python_client_hello():
    """A real ClientHello as Python's ssl module would send it (TLS 1.2/1.3)."""
    ctx = client_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=HOST)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def _recv_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        sock.settimeout(remaining)
        d = sock.recv(n - len(buf))
        if not d:
            raise EOFError(buf)
        buf += d
    return buf


def probe_hello(port, hello, timeout=15):
    """Send raw hello bytes, classify the server's first answer:
    ("server_hello", version, suite) | ("alert", level, description) |
    ("closed", None, None) | ("reset", None, None) | ("timeout", None, None) |
    ("other", first_bytes, None)."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(hello)
        try:
            hdr = _recv_exact(s, 5, deadline)
            ctype, _ver, length = struct.unpack("!BHH", hdr)
            payload = _recv_exact(s, min(length, 16384), deadline)
        except EOFError:
            return ("closed", None, None)
        except ConnectionResetError:
            return ("reset", None, None)
        except socket.timeout:
            return ("timeout", None, None)
        if ctype == 0x15 and len(payload) >= 2:
            return ("alert", payload[0], payload[1])
        if ctype == 0x16 and payload[:1] == b"\x02":
            # ServerHello: type(1) len(3) version(2) random(32) sid_len(1) sid suite(2)
            version = struct.unpack("!H", payload[4:6])[0]
            sid_len = payload[38]
            suite = struct.unpack("!H", payload[39 + sid_len:41 + sid_len])[0]
            return ("server_hello", version, suite)
        return ("other", hdr + payload[:16], None)


# --- openssl s_client ----------------------------------------------------------------------

CLIENT_SIDE_FAILURES = ("no protocols available", "no cipher match", "no ciphers available",
                        "unknown option", "wrong version number unsupported")


def s_client(port, args=(), stdin=b"", timeout=30, quiet=False):
    """Run openssl s_client against 127.0.0.1:port, verifying against the example CA.
    Returns (returncode, combined output as text)."""
    cmd = ["openssl", "s_client", "-connect", f"{HOST}:{port}", "-CAfile", cert("ca.crt"),
           "-verify_return_error", "-verify_ip", HOST]
    if quiet:
        cmd.append("-quiet")
    cmd += list(args)
    try:
        r = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.output or b"").decode(errors="replace")
        raise AssertionError(f"{' '.join(cmd)} did not finish within {timeout}s:\n{out}")
    return r.returncode, r.stdout.decode(errors="replace")


def s_client_negotiated(output):
    """(protocol, cipher) from s_client's summary, or (None, None) if no handshake."""
    proto = cipher = None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("New, ") and "Cipher is" in line:
            proto = line.split(",")[1].strip()
            cipher = line.split("Cipher is", 1)[1].strip()
    if cipher in ("(NONE)", "0000"):
        return None, None
    return proto, cipher
