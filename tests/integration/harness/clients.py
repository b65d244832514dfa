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
