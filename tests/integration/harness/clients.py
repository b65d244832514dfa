"""Real protocol clients (Python stdlib) talking implicit TLS through mailedge."""

import imaplib
import poplib
import smtplib
import subprocess
import threading

from .tlsutil import HOST, client_context

TIMEOUT = 60


def smtps_send(port, msg, sender="sender@example.test", rcpts=("test@example.test",),
               ctx=None, timeout=TIMEOUT):
    with smtplib.SMTP_SSL(HOST, port, context=ctx or client_context(),
                          timeout=timeout) as s:
        code, _ = s.ehlo("client.example.test")
        assert code == 250, code
        refused = s.sendmail(sender, list(rcpts), msg)
        assert refused == {}, refused


def imaps_login(port, user, password="test", ctx=None, timeout=TIMEOUT):
    m = imaplib.IMAP4_SSL(HOST, port, ssl_context=ctx or client_context(), timeout=timeout)
    typ, _ = m.login(user, password)
    assert typ == "OK"
    return m


def imaps_fetch(port, user, uid=1, ctx=None, timeout=TIMEOUT, password="test"):
    """LOGIN, SELECT INBOX, UID FETCH uid BODY[] (peek), LOGOUT; returns the body."""
    m = imaps_login(port, user, password, ctx=ctx, timeout=timeout)
    try:
        typ, _ = m.select("INBOX")
        assert typ == "OK"
        typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
        assert typ == "OK", (typ, data)
        assert data and isinstance(data[0], tuple), data
        return data[0][1]
    finally:
        typ, _ = m.logout()
        assert typ == "BYE"


def pop3s_retr(port, user, which=1, password="test", ctx=None, timeout=TIMEOUT):
    """USER/PASS, RETR which, QUIT; returns the message with CRLF line endings
    (dot-unstuffed by poplib)."""
    p = poplib.POP3_SSL(HOST, port, context=ctx or client_context(), timeout=timeout)
    try:
        assert p.getwelcome().startswith(b"+OK")
        p.user(user)
        p.pass_(password)
        resp, lines, _octets = p.retr(which)
        assert resp.startswith(b"+OK")
        return b"\r\n".join(lines) + b"\r\n"
    finally:
        p.quit()


def run(cmd, timeout=120, input=None):
    """Run a client program; returns CompletedProcess (bytes). Never hangs."""
    try:
        return subprocess.run(cmd, input=input, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{cmd} did not finish within {timeout}s; "
                             f"stdout={e.stdout!r} stderr={e.stderr!r}") from None


class GoodImapSession:
    """A well-behaved IMAPS session kept open across some misbehaviour, then finished:

        with GoodImapSession(port, user, expected) as good:
            ... do something nasty to mailedge ...
        # on exit: SELECT/FETCH/LOGOUT on the same connection, body checked

    It logs in on entry, so it is established before and completes after the bad
    client, i.e. they are concurrent."""

    def __init__(self, port, user, expected):
        self.port, self.user, self.expected = port, user, expected
        self.m = None

    def __enter__(self):
        self.m = imaps_login(self.port, self.user)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            try:
                self.m.shutdown()
            except Exception:
                pass
            return False
        typ, _ = self.m.select("INBOX")
        assert typ == "OK"
        typ, data = self.m.uid("FETCH", "1", "(BODY.PEEK[])")
        assert typ == "OK" and data[0][1] == self.expected, "good session got wrong data"
        typ, _ = self.m.logout()
        assert typ == "BYE"
        return False


def run_threads(n, fn, timeout=180):
    """Run fn(i) in n threads; returns a list of exceptions (None for success). Each
    thread is joined with a bound."""
    results = [None] * n
    done = [False] * n

    def wrap(i):
        try:
            fn(i)
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            results[i] = e
        finally:
            done[i] = True

    threads = [threading.Thread(target=wrap, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    import time
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for i in range(n):
        if not done[i]:
            results[i] = TimeoutError(f"thread {i} still running after {timeout}s")
    return results


# --- raw line clients for STARTTLS listeners (issue 3) ---------------------------------------

class LineClient:
    """A raw client for the plaintext dialogue of a STARTTLS listener that can upgrade
    the same socket to TLS. TCP_NODELAY, so each send() is its own segment. Every read
    is bounded."""

    def __init__(self, port, timeout=15):
        import socket
        self.timeout = timeout
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = self.sock.getsockname()[1]
        self.tls = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        from .tlsutil import read_line
        return read_line(self.sock, timeout=self.timeout)

    def smtp_reply(self):
        """One SMTP reply, all lines (bytes)."""
        out = b""
        while True:
            l = self.line()
            out += l
            if len(l) < 4 or l[3:4] != b"-":
                return out

    def imap_reply(self, tag):
        """Lines up to and including the tagged completion for tag (or an untagged BYE
        when the server closes instead)."""
        out = b""
        tag = tag.encode() if isinstance(tag, str) else tag
        while True:
            l = self.line()
            out += l
            if l.startswith(tag + b" "):
                return out

    def pop3_reply(self, multiline=False):
        l = self.line()
        if not multiline or not l.startswith(b"+OK"):
            return l
        out = l
        while True:
            l = self.line()
            out += l
            if l == b".\r\n":
                return out

    def cmd(self, proto, line, tag=None, multiline=False):
        """Send one command line (str/bytes, CRLF added) and read its reply."""
        data = line.encode() if isinstance(line, str) else line
        self.send(data + b"\r\n")
        if proto == "smtp":
            return self.smtp_reply()
        if proto == "imap":
            return self.imap_reply(tag or data.split(b" ", 1)[0])
        return self.pop3_reply(multiline)

    def greeting(self, proto):
        if proto == "smtp":
            return self.smtp_reply()
        return self.line()

    def pending(self, wait=0.5):
        """Whatever arrives within `wait` seconds (b"" if nothing; stops early at EOF).
        For checks that nothing more was sent."""
        import socket
        import ssl
        import time
        deadline = time.monotonic() + wait
        out = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            self.sock.settimeout(remaining)
            try:
                d = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                return out
            except (ConnectionResetError, ssl.SSLError):
                return out
            finally:
                self.sock.settimeout(self.timeout)
            if not d:
                return out
            out += d

    def starttls(self, ctx=None):
        """TLS handshake on the same socket (after the ready reply was read)."""
        from .tlsutil import client_context
        ctx = ctx or client_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=HOST,
                                    suppress_ragged_eofs=False)
        self.tls = True
        return self.sock

    def read_until_close(self, timeout=None):
        from .tlsutil import read_until_close
        return read_until_close(self.sock, timeout=timeout or self.timeout)
