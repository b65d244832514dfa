"""A recording backend: a tiny SMTP / IMAP / POP3 server on 127.0.0.1 that keeps every
byte it receives, per connection, and answers with texts that name it ("recorder"), so
a test can tell its replies from mailedge's own and prove what did (not) reach it.

Unlike the real Postfix/Dovecot here (ssl = no, so they never offer TLS), it DOES
advertise STARTTLS / STLS, AUTH, SASL-IR, LITERAL+, XCLIENT, XFORWARD...: exactly what
mailedge must filter out before and after TLS.

    rec = RecordingBackend("smtp").start()
    mark = rec.mark()
    ... a session through mailedge ...
    conns = rec.since(mark)            # connections accepted after the mark
    rec.wait_closed(conns)             # bounded
    assert conns[0].received() == b"NOOP\\r\\nQUIT\\r\\n"
    rec.stop()

A "NOOP slow" command (any protocol, IMAP with a tag) makes every later reply on that
connection go out in 3-byte segments.

Client identity (issue 4): RecordingBackend(p, proxy=True) first reads a PROXY v1/v2
header (HAProxy's proxy-protocol.txt) before greeting, as Postfix's
smtpd_upstream_proxy_protocol and Dovecot's haproxy listeners do; conn.proxy_header
holds its exact bytes and conn.first_read what the first recv() returned (the header
must arrive in one piece). identity=True answers the identity commands the way Postfix
and Dovecot do: SMTP XCLIENT -> a new "220" greeting, IMAP ID -> "* ID (...)" + OK,
POP3 greeting with "[XCLIENT]" and XCLIENT -> "+OK Updated".

Every wait is bounded; the threads are daemons and stop() joins them with a bound.
"""

import re
import socket
import threading
import time

from .procs import LOOPBACK

HOSTNAME = "recorder.example.test"

# What the recorder advertises. STARTTLS sits in the middle of the list, and the last
# EHLO line is one mailedge must remove (XFORWARD), so the filter has to fix the
# continuation mark of the line before it.
SMTP_EHLO_KEYWORDS = ["PIPELINING", "SIZE 12345678", "STARTTLS", "AUTH PLAIN LOGIN",
                      "AUTH=PLAIN LOGIN", "8BITMIME", "XCLIENT NAME ADDR PROTO HELO",
                      "ENHANCEDSTATUSCODES", "XFORWARD NAME ADDR PROTO HELO"]
# identity=True: XCLIENT with every attribute Postfix 3.7 offers.
SMTP_EHLO_KEYWORDS_IDENTITY = [
    "XCLIENT NAME ADDR PROTO HELO REVERSE_NAME PORT LOGIN DESTADDR DESTPORT"
    if k.startswith("XCLIENT ") else k for k in SMTP_EHLO_KEYWORDS]
IMAP_CAPS = ["IMAP4rev1", "SASL-IR", "LITERAL+", "STARTTLS", "ID", "ENABLE", "IDLE",
             "AUTH=PLAIN", "AUTH=LOGIN"]
IMAP_POSTLOGIN_CAPS = ["IMAP4rev1", "STARTTLS", "ID", "IDLE", "UIDPLUS"]
POP3_CAPA = ["TOP", "UIDL", "STLS", "USER", "SASL PLAIN LOGIN", "RESP-CODES", "PIPELINING",
             "IMPLEMENTATION recorder"]

LINE_LIMIT = 1 << 20
PROXY_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

# Message text full of lines that look like STARTTLS commands or capability answers: in
# DATA bodies, IMAP literals and POP3 RETR bodies the relay filters must leave them alone.
TRICKY_BODY = (b"Subject: filters must not touch this\r\n\r\n"
               b"STARTTLS\r\nSTLS\r\na STARTTLS\r\n"
               b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n"
               b"* OK [CAPABILITY IMAP4rev1 STARTTLS] x\r\n"
               b"250-STARTTLS\r\n250 STARTTLS\r\nXCLIENT ADDR=192.0.2.1\r\n"
               b"+OK\r\n-ERR\r\n.STLS (dot-stuffed on the wire in POP3 and SMTP)\r\n")


class Conn:
    """One accepted connection: everything received, in order."""

    def __init__(self, sock, index):
        self.sock = sock
        self.index = index
        try:
            self.peer = sock.getpeername()
        except OSError:  # already reset by the peer
            self.peer = None
        self._data = bytearray()
        self._lock = threading.Lock()
        self.closed = threading.Event()
        self.commands = []  # command lines as parsed (bytes, without line ending)
        self.literals = []  # SMTP DATA bodies (with the final dot) and IMAP literals
        self.chunked = False
        self.first_read = None  # bytes returned by the first recv() on this connection
        self.proxy_header = None  # PROXY header bytes (proxy=True recorders)
        self.proxy_error = None  # why no valid header was read, if so

    def received(self):
        with self._lock:
            return bytes(self._data)

    def _add(self, b):
        with self._lock:
            self._data += b

    def __repr__(self):
        return f"<Conn #{self.index} from {self.peer} received={self.received()!r}>"


class _Reader:
    """Line reader over a socket that records every byte and stops with the server."""

    def __init__(self, conn, stopping):
        self.conn = conn
        self.buf = b""
        self.stopping = stopping

    def _fill(self):
        while not self.stopping.is_set():
            try:
                d = self.conn.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return False
            if not d:
                return False
            if self.conn.first_read is None:
                self.conn.first_read = d
            self.conn._add(d)
            self.buf += d
            return True
        return False

    def proxy_header(self):
        """A PROXY v1 line or v2 header at the start of the stream: its bytes, or None
        (conn.proxy_error says why)."""
        while len(self.buf) < 16:
            if not (PROXY_V2_SIG.startswith(self.buf[:12]) or
                    b"PROXY ".startswith(self.buf[:6])):
                break
            if self.buf.startswith(b"PROXY ") and b"\n" in self.buf:
                break
            if not self._fill():
                self.conn.proxy_error = f"EOF after {self.buf!r}"
                return None
        if self.buf.startswith(PROXY_V2_SIG):
            total = 16 + int.from_bytes(self.buf[14:16], "big")
            out = self.exact(total)
            if out is None:
                self.conn.proxy_error = f"EOF inside a v2 header: {self.buf!r}"
            return out
        if self.buf.startswith(b"PROXY "):
            while b"\r\n" not in self.buf[:107]:
                if len(self.buf) >= 107 or not self._fill():
                    self.conn.proxy_error = f"no v1 line: {self.buf[:120]!r}"
                    return None
            i = self.buf.index(b"\r\n") + 2
            out, self.buf = self.buf[:i], self.buf[i:]
            return out
        self.conn.proxy_error = f"no PROXY signature: {self.buf[:32]!r}"
        return None

    def line(self):
        """Next line with its ending (LF or CRLF), or None at EOF/stop."""
        while b"\n" not in self.buf:
            if len(self.buf) > LINE_LIMIT or not self._fill():
                return None
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def exact(self, n):
        """Exactly n bytes (an IMAP literal), or None."""
        while len(self.buf) < n:
            if not self._fill():
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def until(self, terminator):
        """Bytes up to and including terminator (SMTP DATA), or None."""
        while terminator not in self.buf:
            if len(self.buf) > 64 * LINE_LIMIT or not self._fill():
                return None
        i = self.buf.index(terminator) + len(terminator)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out


class RecordingBackend:
    def __init__(self, protocol, port=0, host=LOOPBACK, proxy=False, identity=False):
        if protocol not in ("smtp", "imap", "pop3"):
            raise ValueError(protocol)
        self.protocol = protocol
        self.proxy = proxy
        self.identity = identity
        self.host = host
        self._want_port = port
        self.port = None
        self._lsock = None
        self._stopping = threading.Event()
        self._threads = []
        self._conns = []
        self._lock = threading.Lock()

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    # -- lifecycle -----------------------------------------------------------------
    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self._want_port))
        s.listen(128)
        s.settimeout(0.2)
        self._lsock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name=f"recorder-{self.protocol}",
                             daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, timeout=5):
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))
        if self._lsock is not None:
            self._lsock.close()
        for c in self.connections():
            try:
                c.sock.close()
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- what was received -------------------------------------------------------------
    def connections(self):
        with self._lock:
            return list(self._conns)

    def mark(self):
        """Number of connections accepted so far (use with since())."""
        with self._lock:
            return len(self._conns)

    def since(self, mark):
        with self._lock:
            return list(self._conns[mark:])

    def received_since(self, mark):
        """Everything received on connections accepted after mark, concatenated."""
        return b"".join(c.received() for c in self.since(mark))

    def wait_connections(self, mark, count=1, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            conns = self.since(mark)
            if len(conns) >= count:
                return conns
            if time.monotonic() > deadline:
                raise AssertionError(f"recorder ({self.protocol}): {count} connection(s) "
                                     f"expected within {timeout}s, got {len(conns)}")
            time.sleep(0.05)

    def wait_closed(self, conns, timeout=15):
        deadline = time.monotonic() + timeout
        for c in conns:
            if not c.closed.wait(max(0.0, deadline - time.monotonic())):
                raise AssertionError(f"recorder ({self.protocol}): connection {c!r} still "
                                     f"open after {timeout}s")

    def wait_received(self, conn, data, timeout=15):
        """Wait until conn has received at least len(data) bytes; return them."""
        deadline = time.monotonic() + timeout
        while True:
            got = conn.received()
            if len(got) >= len(data) or conn.closed.is_set():
                return got
            if time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    # -- server --------------------------------------------------------------------------
    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                sock, _addr = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(0.2)
            with self._lock:
                conn = Conn(sock, len(self._conns))
                self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name=f"recorder-{self.protocol}-{conn.index}")
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        try:
            handler = {"smtp": self._smtp, "imap": self._imap, "pop3": self._pop3}
            reader = _Reader(conn, self._stopping)
            if self.proxy:
                conn.proxy_header = reader.proxy_header()
                if conn.proxy_header is None:
                    return  # like Postfix/Dovecot: no valid header, no session
            handler[self.protocol](conn, reader)
        except OSError:
            pass
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
            conn.closed.set()

    @staticmethod
    def _send(conn, text):
        data = text.encode() if isinstance(text, str) else text
        if not conn.chunked:
            conn.sock.sendall(data)
            return
        # "NOOP slow" was received: every later reply goes out in 3-byte segments, so
        # mailedge's reply filters see lines split across reads.
        for i in range(0, len(data), 3):
            conn.sock.sendall(data[i:i + 3])
            time.sleep(0.001)

    @staticmethod
    def _maybe_slow(conn, cmd):
        words = cmd.upper().split()
        if b"NOOP" in words[:2] and words[-1] == b"SLOW":
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.chunked = True

    def _smtp(self, conn, r):
        send = lambda t: self._send(conn, t)  # noqa: E731
        send(f"220 {HOSTNAME} ESMTP recorder\r\n")
        while True:
            line = r.line()
            if line is None:
                return
            cmd = line.rstrip(b"\r\n")
            conn.commands.append(cmd)
            self._maybe_slow(conn, cmd)
            verb = cmd.split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                lines = [HOSTNAME] + (SMTP_EHLO_KEYWORDS_IDENTITY if self.identity
                                      else SMTP_EHLO_KEYWORDS)
                send("".join(f"250-{l}\r\n" for l in lines[:-1]) + f"250 {lines[-1]}\r\n")
            elif verb == b"HELO":
                send(f"250 {HOSTNAME}\r\n")
            elif verb == b"XCLIENT" and self.identity:
                # Postfix: the session restarts, with a new greeting.
                send(f"220 {HOSTNAME} ESMTP recorder, new session\r\n")
            elif verb in (b"NOOP", b"RSET", b"MAIL", b"RCPT", b"VRFY"):
                code = {b"MAIL": "2.1.0", b"RCPT": "2.1.5"}.get(verb, "2.0.0")
                send(f"250 {code} recorder {verb.decode()} ok\r\n")
            elif verb == b"DATA":
                send("354 recorder: end data with <CR><LF>.<CR><LF>\r\n")
                body = r.until(b"\r\n.\r\n")
                if body is None:
                    return
                conn.literals.append(body)
                send("250 2.0.0 recorder queued\r\n")
            elif verb == b"STARTTLS":
                send("454 4.7.0 recorder received STARTTLS (must never happen)\r\n")
            elif verb == b"QUIT":
                send("221 2.0.0 recorder bye\r\n")
                return
            else:
                send("502 5.5.2 recorder: command not recognized\r\n")

    def _imap(self, conn, r):
        send = lambda t: self._send(conn, t)  # noqa: E731
        send(f"* OK [CAPABILITY {' '.join(IMAP_CAPS)}] recorder ready.\r\n")
        while True:
            line = r.line()
            if line is None:
                return
            cmd = line.rstrip(b"\r\n")
            # Literals: {n} (synchronising: "+" first) and {n+}; the command goes on after.
            while True:
                m = re.search(rb"\{(\d+)(\+?)\}$", cmd)
                if not m:
                    break
                if not m.group(2):
                    send("+ Ready for literal data\r\n")
                lit = r.exact(int(m.group(1)))
                more = r.line()
                if lit is None or more is None:
                    return
                conn.literals.append(lit)
                cmd = cmd + b"<literal>" + more.rstrip(b"\r\n")
            conn.commands.append(cmd)
            self._maybe_slow(conn, cmd)
            parts = cmd.decode(errors="replace").split(" ")
            tag = parts[0] if parts[0] else "*"
            verb = parts[1].upper() if len(parts) > 1 else ""
            if verb == "CAPABILITY":
                send(f"* CAPABILITY {' '.join(IMAP_CAPS)}\r\n"
                     f"{tag} OK Capability completed by recorder.\r\n")
            elif verb == "NOOP":
                send(f"{tag} OK NOOP completed by recorder.\r\n")
            elif verb == "ID" and self.identity:
                send(f'* ID ("name" "recorder")\r\n{tag} OK ID completed by recorder.\r\n')
            elif verb == "LOGIN":
                send(f"{tag} OK [CAPABILITY {' '.join(IMAP_POSTLOGIN_CAPS)}] "
                     f"Logged in by recorder.\r\n")
            elif verb == "STARTTLS":
                send(f"{tag} OK recorder received STARTTLS (must never happen).\r\n")
            elif verb == "APPEND":
                send(f"{tag} OK APPEND completed by recorder.\r\n")
            elif verb in ("FETCH", "UID"):
                send(f"* 1 FETCH (UID 1 BODY[] {{{len(TRICKY_BODY)}}}\r\n".encode() +
                     TRICKY_BODY + f")\r\n{tag} OK FETCH completed by recorder.\r\n".encode())
            elif verb == "LOGOUT":
                send(f"* BYE recorder logging out\r\n{tag} OK Logout completed by recorder.\r\n")
                return
            else:
                send(f"{tag} BAD recorder: unknown command.\r\n")

    def _pop3(self, conn, r):
        send = lambda t: self._send(conn, t)  # noqa: E731
        # Dovecot tells a trusted peer (login_trusted_networks) that it takes XCLIENT.
        send("+OK [XCLIENT] recorder POP3 ready.\r\n" if self.identity
             else "+OK recorder POP3 ready.\r\n")
        while True:
            line = r.line()
            if line is None:
                return
            cmd = line.rstrip(b"\r\n")
            conn.commands.append(cmd)
            self._maybe_slow(conn, cmd)
            verb = cmd.split(b" ", 1)[0].upper()
            if verb == b"CAPA":
                send("+OK recorder capability list follows\r\n" +
                     "".join(f"{c}\r\n" for c in POP3_CAPA) + ".\r\n")
            elif verb == b"NOOP":
                send("+OK recorder NOOP\r\n")
            elif verb == b"XCLIENT" and self.identity:
                send("+OK Updated\r\n")
            elif verb == b"USER":
                send("+OK recorder USER\r\n")
            elif verb == b"PASS":
                send("+OK recorder logged in\r\n")
            elif verb == b"STLS":
                send("+OK recorder received STLS (must never happen)\r\n")
            elif verb == b"RETR":
                body = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n"
                                for l in TRICKY_BODY.split(b"\r\n")[:-1])
                send(f"+OK {len(TRICKY_BODY)} octets\r\n".encode() + body + b".\r\n")
            elif verb == b"QUIT":
                send("+OK recorder bye\r\n")
                return
            else:
                send("-ERR recorder: unknown command\r\n")


# --- expected filtered views, for assertions -----------------------------------------------

def _kw(k):
    return k.split(" ", 1)[0].upper()


def smtp_after_tls_ehlo():
    """The recorder's EHLO reply as a client must see it after TLS: STARTTLS, XCLIENT
    and XFORWARD removed, last line marked "250 "."""
    kept = [HOSTNAME] + [k for k in SMTP_EHLO_KEYWORDS
                         if _kw(k) not in ("STARTTLS", "XCLIENT", "XFORWARD")]
    return ("".join(f"250-{l}\r\n" for l in kept[:-1]) + f"250 {kept[-1]}\r\n").encode()


def parse_ehlo(reply):
    """b"250-host\\r\\n250-KW\\r\\n250 KW\\r\\n" -> (host, [keywords]); checks the
    continuation marks."""
    lines = reply.decode().split("\r\n")
    assert lines[-1] == "", reply
    lines = lines[:-1]
    for i, l in enumerate(lines):
        mark = " " if i == len(lines) - 1 else "-"
        assert re.match(rf"^250{re.escape(mark)}", l), f"bad EHLO line {i}: {l!r} in {reply!r}"
    return lines[0][4:], [l[4:] for l in lines[1:]]
