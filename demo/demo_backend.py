#!/usr/bin/python3
"""mailedge demo backend: a tiny cleartext SMTP + IMAP4rev1 + POP3 server.

It exists so that `make demo` can show mailedge relaying real mail-client sessions
without installing Postfix or Dovecot. There is one user and one shared mailbox: a
directory holding one file per message (NNNNNNNNNN.eml, the number being the IMAP UID),
so whatever arrives by SMTP can be read back, byte for byte, over IMAP and POP3.

It is NOT a mail server: it accepts mail for any recipient without authentication (it
only binds loopback addresses), keeps IMAP flags in memory only, and implements just
the subset of each protocol that common clients (curl, swaks, openssl s_client, Python's
smtplib/imaplib/poplib) need. Standard library only: run it with Debian's /usr/bin/python3.

usage: demo_backend.py --maildir DIR [--smtp 127.0.0.1:12025] [--imap 127.0.0.1:12143]
                       [--pop3 127.0.0.1:12110] [--user demo] [--password demo]
"""

import argparse
import asyncio
import base64
import binascii
import hmac
import ipaddress
import os
import re
import signal
import sys
import time

# Limits. They keep a misbehaving client from eating memory; none is reachable by the
# clients the demo is meant for.
LINE_LIMIT = 64 * 1024           # longest command line (asyncio StreamReader limit)
MAX_MESSAGE = 10 * 1024 * 1024   # largest message accepted (SMTP SIZE, IMAP APPEND)
MAX_RECIPIENTS = 100
MAX_ERRORS = 20                  # protocol errors before we hang up on a client
MAX_CONNECTIONS = 512            # concurrent sessions, all protocols together

IMAP_CAPABILITY = "IMAP4rev1 AUTH=PLAIN"
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def log(msg):
    print(f"demo-backend: {msg}", file=sys.stderr, flush=True)


def printable(text, limit=200):
    """Make client input safe for a one-line log entry."""
    out = "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def strip_eol(line):
    if line.endswith(b"\r\n"):
        return line[:-2]
    return line[:-1] if line.endswith(b"\n") else line


def split_message(data):
    """(header including the blank line, body). No blank line: all header."""
    if data.startswith((b"\r\n", b"\n")):          # empty header section
        n = 2 if data.startswith(b"\r\n") else 1
        return data[:n], data[n:]
    cut = [(i + len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    if not cut:
        return data, b""
    return data[:min(cut)], data[min(cut):]


def lines_with_ends(data):
    """Split on LF only (bytes.splitlines would also split on CR, VT, FF...)."""
    return re.findall(rb"[^\n]*\n|[^\n]+\Z", data)


def dot_stuff(data):
    """POP3 multi-line body: double leading dots, end with CRLF '.' CRLF."""
    if data and not data.endswith(b"\n"):
        data += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"


def decode_sasl_plain(b64):
    """RFC 4616 'authzid NUL authcid NUL passwd' -> (authcid, passwd), or None."""
    try:
        raw = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    parts = raw.split(b"\0")
    return (parts[1], parts[2]) if len(parts) == 3 else None


class Mailbox:
    """The one shared mailbox: a directory, one file per message, UID = file number.

    The in-memory UID list is authoritative (this process is the only writer); the
    files make the content inspectable and survive a restart. .state keeps UIDVALIDITY
    and the next UID so UIDs are never reused, as IMAP requires."""

    FILE = re.compile(r"(\d{10})\.eml\Z")

    def __init__(self, path):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self._uids = sorted(int(m.group(1)) for name in os.listdir(path)
                            if (m := self.FILE.match(name)))
        try:
            with open(os.path.join(path, ".state")) as f:
                validity, uidnext = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            validity, uidnext = int(time.time()), 1
        self.uidvalidity = validity
        self.uidnext = max(uidnext, (self._uids[-1] + 1) if self._uids else 1)
        self.flags = {}                       # uid -> set of flags; not persisted
        self._save_state()

    def _file(self, uid):
        return os.path.join(self.path, f"{uid:010d}.eml")

    def _save_state(self):
        tmp = os.path.join(self.path, ".state.tmp")
        with open(tmp, "w") as f:
            f.write(f"{self.uidvalidity} {self.uidnext}\n")
        os.replace(tmp, os.path.join(self.path, ".state"))

    def uids(self):
        return list(self._uids)

    def add(self, data):
        # Write then rename, so no reader ever sees half a message.
        uid = self.uidnext
        tmp = os.path.join(self.path, f".tmp.{uid}")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self._file(uid))
        self._uids.append(uid)
        self.uidnext += 1
        self._save_state()
        return uid

    def read(self, uid):
        try:
            with open(self._file(uid), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def stat(self, uid):
        """(size, mtime) or None if the message is gone."""
        try:
            st = os.stat(self._file(uid))
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime

    def delete(self, uids):
        for uid in uids:
            try:
                os.unlink(self._file(uid))
            except FileNotFoundError:
                pass
            if uid in self._uids:
                self._uids.remove(uid)
            self.flags.pop(uid, None)


class Config:
    def __init__(self, mailbox, user, password, timeout):
        self.mailbox = mailbox
        self.user = user.encode()
        self.password = password.encode()
        self.timeout = timeout
        self.connections = 0
        self.serial = 0

    def check(self, user, password):
        """Credentials as bytes. Constant-time comparisons, both always made (&, not
        and), as a real server's would be: demo code gets copied."""
        return (hmac.compare_digest(user, self.user)
                & hmac.compare_digest(password, self.password))


class LineTooLong(Exception):
    pass


class Hangup(Exception):
    """End the session now (the reason was already sent to the client)."""


class Session:
    """One client connection. Subclasses implement run() for their protocol."""

    proto = "?"
    busy_reply = ""          # sent instead of a greeting when over MAX_CONNECTIONS
    timeout_reply = ""       # sent when the client has been idle for too long
    errors_reply = ""        # sent before hanging up after MAX_ERRORS errors

    def __init__(self, cfg, reader, writer):
        self.cfg = cfg
        self.mb = cfg.mailbox
        self.reader = reader
        self.writer = writer
        cfg.serial += 1
        self.name = f"{self.proto}#{cfg.serial}"
        self.errors = 0

    def log(self, msg):
        log(f"{self.name} {msg}")

    def _io(self, aw):
        return asyncio.wait_for(aw, self.cfg.timeout)

    async def send(self, data):
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self._io(self.writer.drain())   # bounded: a client that never reads

    async def reply(self, line):
        await self.send(line + "\r\n")

    async def read_chunk(self):
        """(bytes, complete): one line with its LF, or a LINE_LIMIT-sized piece of a
        longer one (complete=False). (b"", False) at end of file."""
        try:
            return await self._io(self.reader.readuntil(b"\n")), True
        except asyncio.LimitOverrunError as e:
            return await self._io(self.reader.readexactly(e.consumed)), False
        except asyncio.IncompleteReadError:
            return b"", False               # EOF; a final line without LF is dropped

    async def readline(self):
        """One line including its LF, b"" at EOF. An overlong line is read to its end,
        discarded, and reported as LineTooLong."""
        chunk, complete = await self.read_chunk()
        if complete or not chunk:
            return chunk
        while not complete:
            chunk, complete = await self.read_chunk()
            if not chunk:
                return b""
        raise LineTooLong

    async def error(self, line):
        """Reply to a protocol error (line None: already replied); hang up on clients
        that produce nothing else, such as a TLS client or a web browser."""
        if line:
            await self.reply(line)
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            self.log("too many errors, closing")
            await self.reply(self.errors_reply)
            raise Hangup

    async def handle(self):
        peer = self.writer.get_extra_info("peername")
        self.cfg.connections += 1
        self.log(f"connect from {peer[0]}:{peer[1]}" if peer else "connect")
        try:
            if self.cfg.connections > MAX_CONNECTIONS:
                self.log("too many connections, refusing")
                await self.reply(self.busy_reply)
            else:
                await self.run()
        except asyncio.TimeoutError:
            self.log("idle timeout")
            try:
                await asyncio.wait_for(self.reply(self.timeout_reply), 1)
            except Exception:
                pass
        except (Hangup, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as e:   # a bug here must cost one session, not the server
            self.log(f"internal error: {type(e).__name__}: {e}")
        finally:
            self.cfg.connections -= 1
            self.writer.close()
            self.log("disconnect")


# ---------------------------------------------------------------------------- SMTP

class SmtpSession(Session):
    """RFC 5321 subset. Reading strictly one command at a time from a buffered stream
    makes PIPELINING (RFC 2920) correct for free: pipelined commands simply wait in the
    buffer, including the message after DATA's 354."""

    proto = "smtp"
    busy_reply = "421 4.3.2 demo-backend: too many connections, try later"
    timeout_reply = "421 4.4.2 demo-backend: idle timeout, closing connection"
    errors_reply = "421 4.7.0 demo-backend: too many errors, closing connection"
    HELP = "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT AUTH VRFY HELP"

    def reset(self):
        self.mail_from = None
        self.rcpts = []

    async def run(self):
        self.reset()
        self.authenticated = False
        await self.reply("220 localhost ESMTP demo-backend (mailedge demo) ready")
        commands = {"EHLO": self.ehlo, "HELO": self.helo, "MAIL": self.mail,
                    "RCPT": self.rcpt, "DATA": self.data, "RSET": self.rset,
                    "NOOP": self.noop, "QUIT": self.quit, "AUTH": self.auth,
                    "VRFY": self.vrfy, "HELP": self.help}
        while True:
            try:
                line = await self.readline()
            except LineTooLong:
                await self.error("500 5.5.2 Line too long")
                continue
            if not line:
                return
            text = strip_eol(line).decode("latin-1")
            verb, _, arg = text.strip().partition(" ")
            verb = verb.upper()
            self.log(f"AUTH {printable(arg.split(' ')[0])} ***" if verb == "AUTH"
                     else printable(text))
            handler = commands.get(verb)
            if handler is None:
                await self.error("500 5.5.2 Command unrecognized")
            elif await handler(arg.strip()) is False:
                return

    async def ehlo(self, arg):
        if not arg:
            return await self.error("501 5.5.4 Syntax: EHLO hostname")
        self.reset()
        await self.send("250-localhost greets " + printable(arg, 64) + "\r\n"
                        f"250-SIZE {MAX_MESSAGE}\r\n"
                        "250-8BITMIME\r\n"
                        "250-PIPELINING\r\n"
                        "250-ENHANCEDSTATUSCODES\r\n"
                        "250-AUTH PLAIN\r\n"
                        "250 HELP\r\n")

    async def helo(self, arg):
        if not arg:
            return await self.error("501 5.5.4 Syntax: HELO hostname")
        self.reset()
        await self.reply("250 localhost")

    async def mail(self, arg):
        m = re.fullmatch(r"(?i)FROM:\s*<([^<>\s]*)>(\s+.*)?", arg)
        if not m:
            return await self.error("501 5.5.4 Syntax: MAIL FROM:<address>")
        if self.mail_from is not None:
            return await self.error("503 5.5.1 Nested MAIL command")
        for param in (m.group(2) or "").split():
            key, _, value = param.upper().partition("=")
            if key == "SIZE" and value.isdigit() and value.isascii():
                if int(value) > MAX_MESSAGE:
                    return await self.error("552 5.3.4 Message size exceeds fixed limit")
            elif not ((key == "BODY" and value in ("7BIT", "8BITMIME")) or key == "AUTH"):
                return await self.error(f"555 5.5.4 Unsupported parameter {printable(param, 40)}")
        self.mail_from = m.group(1)
        await self.reply("250 2.1.0 Ok")

    async def rcpt(self, arg):
        m = re.fullmatch(r"(?i)TO:\s*<([^<>\s]+)>", arg)
        if not m:
            return await self.error("501 5.5.4 Syntax: RCPT TO:<address>")
        if self.mail_from is None:
            return await self.error("503 5.5.1 Need MAIL command first")
        if len(self.rcpts) >= MAX_RECIPIENTS:
            return await self.reply("452 4.5.3 Too many recipients")
        self.rcpts.append(m.group(1))       # every address lands in the one mailbox
        await self.reply("250 2.1.5 Ok")

    async def data(self, arg):
        if arg:
            return await self.error("501 5.5.4 Syntax: DATA")
        if self.mail_from is None or not self.rcpts:
            return await self.error("503 5.5.1 Need MAIL and RCPT commands first")
        await self.reply("354 End data with <CR><LF>.<CR><LF>")
        # Lines end with CRLF (RFC 5321 2.3.8): only after CRLF does a "." start the
        # terminator or get unstuffed, so a bare LF inside the message is data, and
        # what a client sends comes back byte for byte. One leniency: a "." LF line
        # after any line end also ends the message, for hand-typed sessions
        # (openssl s_client without -crlf).
        parts, size, line_end, last_byte = [], 0, b"\r\n", b""
        while True:
            chunk, complete = await self.read_chunk()
            if not chunk:
                self.log("connection lost during DATA, message dropped")
                return False
            if (line_end == b"\r\n" and chunk == b".\r\n") or (line_end and chunk == b".\n"):
                break
            if line_end == b"\r\n" and chunk.startswith(b"."):
                chunk = chunk[1:]                   # dot-unstuffing (RFC 5321 4.5.2)
            if complete:         # (an overlong line's CR may have ended the last chunk)
                crlf = chunk.endswith(b"\r\n") or (chunk == b"\n" and last_byte == b"\r")
                line_end = b"\r\n" if crlf else b"\n"
            else:
                line_end = b""
            last_byte = chunk[-1:]
            size += len(chunk)
            if size <= MAX_MESSAGE:
                parts.append(chunk)
            else:
                parts = []                      # keep reading to the end, then refuse
        self.reset()
        if size > MAX_MESSAGE:
            return await self.reply("552 5.3.4 Message size exceeds fixed limit")
        uid = self.mb.add(b"".join(parts))
        self.log(f"stored message uid={uid} size={size}")
        await self.reply(f"250 2.0.0 Ok: queued as {uid}")

    async def rset(self, arg):
        self.reset()
        await self.reply("250 2.0.0 Ok")

    async def noop(self, arg):
        await self.reply("250 2.0.0 Ok")

    async def quit(self, arg):
        await self.reply("221 2.0.0 Bye")
        return False

    async def vrfy(self, arg):
        await self.reply("252 2.5.0 Cannot VRFY user, but will accept message")

    async def help(self, arg):
        await self.reply(self.HELP)

    async def auth(self, arg):
        """AUTH PLAIN, with or without initial response. Optional: mail is accepted
        either way; it is here so clients configured to authenticate work."""
        mech, _, initial = arg.partition(" ")
        if self.authenticated or self.mail_from is not None:
            return await self.error("503 5.5.1 AUTH not allowed now")
        if mech.upper() != "PLAIN":
            return await self.error("504 5.5.4 Unrecognized authentication type")
        if not initial:
            await self.reply("334 ")
            try:
                initial = strip_eol(await self.readline()).decode("latin-1")
            except LineTooLong:
                return await self.error("500 5.5.2 Line too long")
        if initial.strip() == "*":
            return await self.error("501 5.0.0 Authentication cancelled")
        creds = decode_sasl_plain("" if initial.strip() == "=" else initial)
        if creds and self.cfg.check(*creds):
            self.authenticated = True
            return await self.reply("235 2.7.0 Authentication successful")
        await self.error("535 5.7.8 Authentication credentials invalid")


# ---------------------------------------------------------------------------- POP3

class Pop3Session(Session):
    """RFC 1939 subset (+ RFC 2449 CAPA). The maildrop is snapshotted at login;
    DELE only marks, the files go at QUIT (the UPDATE state)."""

    proto = "pop3"
    busy_reply = "-ERR [SYS/TEMP] demo-backend: too many connections, try later"
    timeout_reply = "-ERR demo-backend: idle timeout, closing connection"
    errors_reply = "-ERR demo-backend: too many errors, closing connection"
    CAPA = ["USER", "UIDL", "TOP", "RESP-CODES", "PIPELINING",
            "IMPLEMENTATION demo-backend"]

    async def run(self):
        self.user = None
        self.msgs = None          # after login: list of (uid, size), index = number-1
        self.deleted = set()
        await self.reply("+OK demo-backend POP3 ready")
        while True:
            try:
                line = await self.readline()
            except LineTooLong:
                await self.error("-ERR line too long")
                continue
            if not line:
                return
            text = strip_eol(line).decode("latin-1")
            verb, *args = text.split(" ")
            verb = verb.upper()
            self.log("PASS ***" if verb == "PASS" else printable(text))
            if await self.dispatch(verb, args) is False:
                return

    async def dispatch(self, verb, args):
        if verb == "CAPA":
            return await self.send("+OK Capability list follows\r\n"
                                   + "".join(c + "\r\n" for c in self.CAPA) + ".\r\n")
        if verb == "QUIT":
            return await self.quit()
        if self.msgs is None:
            handler = {"USER": self.cmd_user, "PASS": self.cmd_pass}.get(verb)
        else:
            handler = {"STAT": self.stat, "LIST": self.list, "UIDL": self.uidl,
                       "RETR": self.retr, "TOP": self.top, "DELE": self.dele,
                       "RSET": self.rset, "NOOP": self.noop}.get(verb)
        if handler is None:
            return await self.error("-ERR unknown command or wrong state")
        await handler(args)

    async def cmd_user(self, args):
        if len(args) != 1 or not args[0]:
            return await self.error("-ERR usage: USER name")
        self.user = args[0].encode("latin-1")
        await self.reply("+OK send PASS")

    async def cmd_pass(self, args):
        if self.user is None:
            return await self.error("-ERR USER first")
        # The password is the rest of the line: it may contain spaces.
        password = " ".join(args).encode("latin-1")
        user, self.user = self.user, None
        if not self.cfg.check(user, password):
            return await self.error("-ERR [AUTH] invalid user name or password")
        self.msgs = [(uid, st[0]) for uid in self.mb.uids() if (st := self.mb.stat(uid))]
        await self.reply(f"+OK maildrop has {len(self.msgs)} messages")

    def live(self):
        return [(n, uid, size) for n, (uid, size) in enumerate(self.msgs, 1)
                if n not in self.deleted]

    async def message_arg(self, arg):
        """Message number -> (uid, size), or None after replying -ERR."""
        if not re.fullmatch(r"[1-9]\d{0,9}", arg) or int(arg) > len(self.msgs):
            await self.error("-ERR no such message")
            return None
        if int(arg) in self.deleted:
            await self.error(f"-ERR message {arg} already deleted")
            return None
        return self.msgs[int(arg) - 1]

    def uidl_of(self, uid):
        return f"{self.mb.uidvalidity}.{uid}"

    async def stat(self, args):
        live = self.live()
        await self.reply(f"+OK {len(live)} {sum(size for _, _, size in live)}")

    async def listing(self, args, fmt):
        if len(args) > 1:
            return await self.error("-ERR too many arguments")
        if args:
            msg = await self.message_arg(args[0])
            if msg:
                await self.reply(f"+OK {args[0]} {fmt(*msg)}")
            return
        live = self.live()
        await self.send(f"+OK {len(live)} messages\r\n"
                        + "".join(f"{n} {fmt(uid, size)}\r\n" for n, uid, size in live)
                        + ".\r\n")

    async def list(self, args):
        await self.listing(args, lambda uid, size: size)

    async def uidl(self, args):
        await self.listing(args, lambda uid, size: self.uidl_of(uid))

    async def retr(self, args):
        if len(args) != 1:
            return await self.error("-ERR usage: RETR msg")
        msg = await self.message_arg(args[0])
        if msg:
            await self.send_body(msg[0], lambda data: data)

    async def top(self, args):
        if len(args) != 2 or not re.fullmatch(r"\d{1,9}", args[1]):
            return await self.error("-ERR usage: TOP msg lines")
        msg = await self.message_arg(args[0])
        if msg:
            def head(data, n=int(args[1])):
                header, body = split_message(data)
                return header + b"".join(lines_with_ends(body)[:n])
            await self.send_body(msg[0], head)

    async def send_body(self, uid, transform):
        data = self.mb.read(uid)
        if data is None:       # deleted meanwhile by another POP3 or IMAP session
            return await self.error("-ERR message no longer exists")
        await self.send(f"+OK {len(data)} octets\r\n".encode() + dot_stuff(transform(data)))

    async def dele(self, args):
        if len(args) != 1:
            return await self.error("-ERR usage: DELE msg")
        if await self.message_arg(args[0]):
            self.deleted.add(int(args[0]))
            await self.reply(f"+OK message {args[0]} deleted")

    async def rset(self, args):
        self.deleted.clear()
        await self.reply(f"+OK maildrop has {len(self.msgs)} messages")

    async def noop(self, args):
        await self.reply("+OK")

    async def quit(self):
        if self.msgs is not None and self.deleted:
            self.mb.delete([self.msgs[n - 1][0] for n in self.deleted])
        await self.reply(f"+OK demo-backend signing off ({len(self.deleted)} deleted)")
        return False


# ---------------------------------------------------------------------------- IMAP

class ImapError(Exception):
    """Tagged BAD/NO reply: ImapError("BAD Syntax error")."""


class ImapParser:
    """Tokenizer for IMAP command arguments: atoms, "quoted" strings, {n} literals
    (spliced into the command text by ImapSession.read_command), and (lists)."""

    def __init__(self, data):
        self.d = data        # bytes
        self.i = 0

    def at_end(self):
        while self.i < len(self.d) and self.d[self.i:self.i + 1] == b" ":
            self.i += 1
        return self.i >= len(self.d) or self.d[self.i:self.i + 1] in (b"\r", b"\n")

    def token(self):
        if self.at_end():
            raise ImapError("BAD Missing argument")
        c = self.d[self.i:self.i + 1]
        if c == b"(":
            self.i += 1
            items = []
            while True:
                if self.at_end():
                    raise ImapError("BAD Unterminated list")
                if self.d[self.i:self.i + 1] == b")":
                    self.i += 1
                    return items
                items.append(self.token())
        if c == b")":
            raise ImapError("BAD Unexpected )")
        if c == b'"':
            m = re.compile(rb'"((?:[^"\\\r\n]|\\["\\])*)"').match(self.d, self.i)
            if not m:
                raise ImapError("BAD Bad quoted string")
            self.i = m.end()
            return re.sub(rb"\\(.)", rb"\1", m.group(1)).decode("latin-1")
        if c == b"{":
            m = re.compile(rb"\{(\d+)\+?\}\r\n").match(self.d, self.i)
            if not m:
                raise ImapError("BAD Bad literal")
            start = m.end()
            self.i = start + int(m.group(1))
            return self.d[start:self.i].decode("latin-1")
        m = re.compile(rb'[^ ()"\r\n]+').match(self.d, self.i)
        self.i = m.end()
        return m.group(0).decode("latin-1")

    def rest(self):
        out = []
        while not self.at_end():
            out.append(self.token())
        return out


def parse_set(text, largest):
    """IMAP sequence set '1:3,5,7:*' -> list of (low, high); '*' is `largest`."""
    def num(x):
        if x == "*":
            return largest
        if not re.fullmatch(r"[1-9]\d{0,9}", x):
            raise ImapError("BAD Invalid sequence set")
        return int(x)
    ranges = []
    for part in text.split(","):
        a, sep, b = part.partition(":")
        lo, hi = num(a), num(b) if sep else num(a)
        ranges.append((min(lo, hi), max(lo, hi)))
    return ranges


def in_set(n, ranges):
    return any(lo <= n <= hi for lo, hi in ranges)


def imap_literal(data):
    return b"{%d}\r\n" % len(data) + data


def header_fields(header, names, exclude):
    """The header fields named (or, exclude=True, not named), then the blank line."""
    names = {n.upper() for n in names}
    fields = []
    for line in lines_with_ends(header):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line                 # folded continuation line
        else:
            fields.append(line)
    keep = [f for f in fields
            if (f.split(b":", 1)[0].strip().decode("latin-1").upper() in names) != exclude]
    return b"".join(keep) + b"\r\n"


def parse_section(item):
    """'BODY.PEEK[HEADER.FIELDS (From)]<0.10>' -> (section, fields match, origin, count).
    Only whole-message sections: no MIME part numbers (no BODYSTRUCTURE either)."""
    m = re.fullmatch(r"(?i)BODY(?:\.PEEK)?\[([^\]]*)\](?:<(\d+)(?:\.(\d+))?>)?", item)
    if not m:
        raise ImapError("BAD Bad BODY[] section")
    section = m.group(1)
    fields = re.fullmatch(r"(?i)HEADER\.FIELDS(\.NOT)? \(([^()]*)\)", section)
    if section.upper() not in ("", "HEADER", "TEXT") and not fields:
        raise ImapError("BAD Only BODY[], [HEADER], [TEXT], [HEADER.FIELDS] supported")
    return section, fields, m.group(2), m.group(3)


def body_section(item, data, header, body):
    """The FETCH response element for a BODY[...] item."""
    section, fields, origin, count = parse_section(item)
    if fields:
        content = header_fields(header, fields.group(2).split(), bool(fields.group(1)))
    else:
        content = {"": data, "HEADER": header, "TEXT": body}[section.upper()]
    name = f"BODY[{section}]"
    if origin is not None:           # partial fetch: the reply names only the origin
        start = int(origin)
        content = content[start:start + int(count)] if count else content[start:]
        name += f"<{start}>"
    return name.encode("latin-1") + b" " + imap_literal(content)


class ImapSession(Session):
    """IMAP4rev1 (RFC 3501) subset: one mailbox, INBOX."""

    proto = "imap"
    busy_reply = "* BYE [UNAVAILABLE] demo-backend: too many connections, try later"
    timeout_reply = "* BYE demo-backend: idle timeout, closing connection"
    errors_reply = "* BYE demo-backend: too many errors, closing connection"
    # tag SP command: the tag is any ASTRING-CHAR but "+" (RFC 3501 formal syntax).
    TAG_COMMAND = re.compile(rb'([^ \r\n(){%*"\\\]+]+) ([A-Za-z]+)(?=[ \r\n]|\Z)')
    SIMPLE_ITEMS = {"UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE", "RFC822",
                    "RFC822.HEADER", "RFC822.TEXT"}
    FETCH_ITEM = re.compile(r"(?i)BODY(?:\.PEEK)?\[[^\]]*\](?:<\d+(?:\.\d+)?>)?|[^\s()]+")
    # Commands after which pending EXPUNGEs are reported; after the others only new
    # messages (EXISTS) are, since EXPUNGE may not be sent during FETCH/STORE/SEARCH.
    FULL_SYNC = {"NOOP", "CHECK", "EXPUNGE", "SELECT", "EXAMINE"}

    async def run(self):
        self.authenticated = False
        self.view = None            # selected: list of UIDs, index = sequence number-1
        await self.reply(f"* OK [CAPABILITY {IMAP_CAPABILITY}] demo-backend IMAP4rev1 ready")
        while True:
            try:
                raw, too_large = await self.read_command()
            except LineTooLong:
                await self.error("* BAD Line too long")
                continue
            if raw is None:
                return
            m = self.TAG_COMMAND.match(raw)
            if not m:
                await self.error("* BAD Invalid tag or command")
                continue
            tag = m.group(1).decode("latin-1")
            cmd = m.group(2).decode().upper()
            self.log(self.loggable(tag, cmd, raw))
            try:
                if too_large:
                    raise ImapError("BAD Command or literal too large")
                result = await self.dispatch(cmd, ImapParser(raw[m.end():]))
            except ImapError as e:
                result = str(e)
            except LineTooLong:               # an overlong AUTHENTICATE response
                result = "BAD Line too long"
            if self.view is not None and cmd != "LOGOUT":
                await self.sync(full=cmd in self.FULL_SYNC)
            await self.reply(f"{tag} {result}")
            if cmd == "LOGOUT":
                return
            if result.startswith("BAD"):
                await self.error(None)

    def loggable(self, tag, cmd, raw):
        if cmd in ("LOGIN", "AUTHENTICATE"):
            first = ImapParser(raw.split(b" ", 2)[2] if raw.count(b" ") >= 2 else b"")
            try:
                return f"{printable(tag)} {cmd} {printable(first.token())} ***"
            except ImapError:
                pass
        return printable(raw.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1"))

    async def read_command(self):
        """(command, too_large): literals spliced in as '{n}\\r\\n' + n bytes; (None,
        False) at EOF. A literal over the limit is not asked for: too_large is set and
        the command gets a tagged BAD, which the client, waiting for our "+", reads
        instead (RFC 3501 7.5)."""
        buf = b""
        while True:
            line = await self.readline()
            if not line:
                return None, False
            buf += line
            m = re.search(rb"\{(\d{1,10})(\+?)\}\r?\n\Z", line)
            if not m:
                return buf, False
            n = int(m.group(1))
            if len(buf) + n > MAX_MESSAGE + LINE_LIMIT:
                if m.group(2):         # non-synchronizing: the bytes are coming anyway
                    await self.reply("* BYE Literal too large")
                    raise Hangup
                return buf, True
            if not buf.endswith(b"\r\n"):        # keep the parser's '{n}\r\n' form
                buf = buf[:-1] + b"\r\n"
            if not m.group(2):
                await self.reply("+ Ready for literal data")
            buf += await self._io(self.reader.readexactly(n))

    async def dispatch(self, cmd, args):
        if cmd == "UID":
            sub = args.token().upper()
            if sub not in ("FETCH", "SEARCH", "STORE"):
                raise ImapError("BAD Unknown UID command")
            return await self.in_mailbox(sub, args, uid=True)
        any_state = {"CAPABILITY": self.capability, "NOOP": self.noop,
                     "LOGOUT": self.logout}
        not_authenticated = {"LOGIN": self.login, "AUTHENTICATE": self.authenticate}
        authenticated = {"SELECT": self.select, "EXAMINE": self.select,
                         "LIST": self.list, "LSUB": self.list, "STATUS": self.status,
                         "APPEND": self.append, "SUBSCRIBE": self.noop,
                         "UNSUBSCRIBE": self.noop, "CREATE": self.cannot,
                         "DELETE": self.cannot, "RENAME": self.cannot}
        if cmd in any_state:
            return await any_state[cmd](cmd, args)
        if cmd in not_authenticated:
            if self.authenticated:
                raise ImapError("BAD Already authenticated")
            return await not_authenticated[cmd](cmd, args)
        if cmd in authenticated:
            if not self.authenticated:
                raise ImapError("NO Not authenticated")
            return await authenticated[cmd](cmd, args)
        if cmd in ("FETCH", "SEARCH", "STORE", "CHECK", "CLOSE", "EXPUNGE"):
            return await self.in_mailbox(cmd, args, uid=False)
        raise ImapError("BAD Unknown command")

    async def in_mailbox(self, cmd, args, uid):
        if self.view is None:
            raise ImapError("BAD No mailbox selected")
        if cmd == "CHECK":
            return "OK CHECK completed"
        handler = {"FETCH": self.fetch, "SEARCH": self.search, "STORE": self.store,
                   "CLOSE": self.close, "EXPUNGE": self.expunge}[cmd]
        return await handler(args, uid)

    # --- any state
    async def capability(self, cmd, args):
        await self.reply(f"* CAPABILITY {IMAP_CAPABILITY}")
        return "OK CAPABILITY completed"

    async def noop(self, cmd, args):
        return f"OK {cmd} completed"

    async def logout(self, cmd, args):
        await self.reply("* BYE demo-backend logging out")
        return "OK LOGOUT completed"

    # --- not authenticated
    async def login(self, cmd, args):
        user, password = args.token(), args.token()
        if not self.cfg.check(user.encode("latin-1"), password.encode("latin-1")):
            raise ImapError("NO [AUTHENTICATIONFAILED] Invalid credentials")
        self.authenticated = True
        return "OK LOGIN completed"

    async def authenticate(self, cmd, args):
        mech = args.token()
        if mech.upper() != "PLAIN":
            raise ImapError("NO Unsupported authentication mechanism")
        if not args.at_end():           # SASL-IR style initial response (RFC 4959)
            response = args.token()
        else:
            await self.reply("+ ")
            response = strip_eol(await self.readline()).decode("latin-1")
        if response.strip() == "*":
            raise ImapError("BAD AUTHENTICATE cancelled")
        creds = decode_sasl_plain("" if response.strip() == "=" else response)
        if not creds or not self.cfg.check(*creds):
            raise ImapError("NO [AUTHENTICATIONFAILED] Invalid credentials")
        self.authenticated = True
        return "OK AUTHENTICATE completed"

    # --- authenticated
    @staticmethod
    def is_inbox(name):
        return name.upper() == "INBOX"

    async def cannot(self, cmd, args):
        raise ImapError("NO [CANNOT] The demo backend has only INBOX")

    async def select(self, cmd, args):
        name = args.token()
        self.view = None                 # a failed SELECT leaves nothing selected
        if not self.is_inbox(name):
            raise ImapError("NO [NONEXISTENT] No such mailbox (only INBOX exists)")
        self.readonly = cmd == "EXAMINE"
        self.view = self.mb.uids()
        self.last_uid = self.view[-1] if self.view else 0
        flags = " ".join(SYSTEM_FLAGS)
        unseen = [n for n, uid in enumerate(self.view, 1)
                  if "\\Seen" not in self.mb.flags.get(uid, ())]
        await self.send(f"* FLAGS ({flags})\r\n"
                        f"* OK [PERMANENTFLAGS ({flags})] Flags kept until restart\r\n"
                        f"* {len(self.view)} EXISTS\r\n"
                        "* 0 RECENT\r\n"
                        + (f"* OK [UNSEEN {unseen[0]}] First unseen\r\n" if unseen else "")
                        + f"* OK [UIDVALIDITY {self.mb.uidvalidity}] UIDs valid\r\n"
                        f"* OK [UIDNEXT {self.mb.uidnext}] Predicted next UID\r\n")
        return f"OK [{'READ-ONLY' if self.readonly else 'READ-WRITE'}] {cmd} completed"

    async def list(self, cmd, args):
        reference, pattern = args.token(), args.token()
        if pattern == "":        # asks for the hierarchy delimiter
            await self.reply('* %s (\\Noselect) "/" ""' % cmd)
        else:
            regex = "".join(".*" if c in "*%" else re.escape(c) for c in reference + pattern)
            if re.fullmatch(regex, "INBOX", re.I):
                await self.reply(f'* {cmd} (\\HasNoChildren) "/" INBOX')
        return f"OK {cmd} completed"

    async def status(self, cmd, args):
        name, items = args.token(), args.token()
        if not self.is_inbox(name):
            raise ImapError("NO [NONEXISTENT] No such mailbox")
        if not isinstance(items, list):
            raise ImapError("BAD Expected a list of status items")
        uids = self.mb.uids()
        values = {"MESSAGES": len(uids), "RECENT": 0, "UIDNEXT": self.mb.uidnext,
                  "UIDVALIDITY": self.mb.uidvalidity,
                  "UNSEEN": sum("\\Seen" not in self.mb.flags.get(u, ()) for u in uids)}
        try:
            out = " ".join(f"{item.upper()} {values[item.upper()]}" for item in items)
        except (KeyError, AttributeError):
            raise ImapError("BAD Unknown status item")
        await self.reply(f"* STATUS INBOX ({out})")
        return "OK STATUS completed"

    async def append(self, cmd, args):
        name = args.token()
        tokens = args.rest()
        if not tokens or not isinstance(tokens[-1], str):
            raise ImapError("BAD Syntax: APPEND mailbox [(flags)] [date] literal")
        if not self.is_inbox(name):
            raise ImapError("NO [TRYCREATE] No such mailbox (only INBOX exists)")
        uid = self.mb.add(tokens[-1].encode("latin-1"))
        if len(tokens) > 1 and isinstance(tokens[0], list):
            self.mb.flags[uid] = {f for f in tokens[0] if f in SYSTEM_FLAGS}
        self.log(f"appended message uid={uid} size={len(tokens[-1])}")
        return "OK APPEND completed"

    # --- selected
    async def sync(self, full):
        """Tell the client what changed in the shared mailbox since it last looked."""
        current = self.mb.uids()
        if full:
            present = set(current)
            for i in range(len(self.view) - 1, -1, -1):
                if self.view[i] not in present:
                    del self.view[i]
                    await self.reply(f"* {i + 1} EXPUNGE")
        new = [u for u in current if u > self.last_uid]
        if new:
            self.view += new
            self.last_uid = new[-1]
            await self.reply(f"* {len(self.view)} EXISTS")

    def messages(self, text, uid):
        """Sequence set (of UIDs if uid) -> [(seqno, uid)] in the current view."""
        if uid:
            ranges = parse_set(text, self.view[-1] if self.view else 0)
            return [(n, u) for n, u in enumerate(self.view, 1) if in_set(u, ranges)]
        ranges = parse_set(text, len(self.view))
        if any(hi > len(self.view) or lo < 1 for lo, hi in ranges):
            raise ImapError("BAD Invalid message sequence number")
        return [(n, u) for n, u in enumerate(self.view, 1) if in_set(n, ranges)]

    async def fetch(self, args, uid):
        which = args.token()
        if not isinstance(which, str):
            raise ImapError("BAD Syntax: FETCH set items")
        text = args.d[args.i:].decode("latin-1").strip()
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1]
        macros = {"ALL": "FLAGS INTERNALDATE RFC822.SIZE",     # ENVELOPE is not supported
                  "FAST": "FLAGS INTERNALDATE RFC822.SIZE",
                  "FULL": "FLAGS INTERNALDATE RFC822.SIZE"}
        text = macros.get(text.upper(), text)
        items = self.FETCH_ITEM.findall(text)
        if not items:
            raise ImapError("BAD Syntax: FETCH set items")
        for item in items:                 # refuse before sending any untagged FETCH
            if item.upper()[:5] in ("BODY[", "BODY."):
                parse_section(item)
            elif item.upper() not in self.SIMPLE_ITEMS:
                raise ImapError(f"BAD Unsupported FETCH item {printable(item, 40)}")
        if uid and not any(i.upper() == "UID" for i in items):
            items.insert(0, "UID")
        missing = False
        for n, u in self.messages(which, uid):
            parts = await self.fetch_one(u, items)
            if parts is None:
                missing = True            # expunged by another session meanwhile
                continue
            await self.send(b"* %d FETCH (" % n + b" ".join(parts) + b")\r\n")
        if missing:
            return "NO Some messages were expunged meanwhile"
        return "OK FETCH completed"

    async def fetch_one(self, uid, items):
        data = self.mb.read(uid)
        st = self.mb.stat(uid)
        if data is None or st is None:
            return None
        flags = self.mb.flags.setdefault(uid, set())
        header, body = split_message(data)
        parts, seen = [], False
        for item in items:
            up = item.upper()
            if up == "UID":
                parts.append(b"UID %d" % uid)
            elif up == "FLAGS":
                parts.append(None)             # filled in last: this FETCH may set \Seen
            elif up == "RFC822.SIZE":
                parts.append(b"RFC822.SIZE %d" % len(data))
            elif up == "INTERNALDATE":
                date = time.strftime("%d-%b-%Y %H:%M:%S +0000", time.gmtime(st[1]))
                parts.append(f'INTERNALDATE "{date}"'.encode())
            elif up in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
                content = {"RFC822": data, "RFC822.HEADER": header, "RFC822.TEXT": body}[up]
                seen |= up != "RFC822.HEADER"
                parts.append(up.encode() + b" " + imap_literal(content))
            else:                                   # BODY[...], checked by fetch()
                parts.append(body_section(item, data, header, body))
                seen |= not up.startswith("BODY.PEEK")
        if seen and not self.readonly and "\\Seen" not in flags:
            flags.add("\\Seen")
            if "FLAGS" not in (i.upper() for i in items):
                parts.append(None)      # RFC 3501 6.4.5: report the implicit flag change
        flag_text = b"FLAGS (%s)" % " ".join(sorted(flags)).encode()
        return [flag_text if p is None else p for p in parts]

    async def search(self, args, uid):
        keys = args.rest()
        if len(keys) >= 2 and str(keys[0]).upper() == "CHARSET":
            keys = keys[2:]             # only ASCII-free criteria are supported anyway
        if not keys:
            raise ImapError("BAD Missing search criteria")
        result = self.messages("1:*", False) if self.view else []
        i = 0
        while i < len(keys):
            key = keys[i].upper() if isinstance(keys[i], str) else None
            flag = {"SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
                    "NEW": ("\\Seen", False), "DELETED": ("\\Deleted", True),
                    "UNDELETED": ("\\Deleted", False), "FLAGGED": ("\\Flagged", True),
                    "UNFLAGGED": ("\\Flagged", False)}.get(key)
            if key == "ALL":
                pass
            elif flag:
                result = [(n, u) for n, u in result
                          if (flag[0] in self.mb.flags.get(u, ())) == flag[1]]
            elif key == "UID" and i + 1 < len(keys):
                i += 1
                chosen = {u for _, u in self.messages(str(keys[i]), True)}
                result = [(n, u) for n, u in result if u in chosen]
            elif key and re.fullmatch(r"[0-9*:,]+", key):
                ranges = parse_set(key, len(self.view))
                result = [(n, u) for n, u in result if in_set(n, ranges)]
            else:
                raise ImapError("BAD Unsupported search criterion")
            i += 1
        found = " ".join(str(u if uid else n) for n, u in result)
        await self.reply(f"* SEARCH {found}".rstrip())
        return "OK SEARCH completed"

    async def store(self, args, uid):
        which, item = args.token(), args.token()
        flags = args.rest()
        if len(flags) == 1 and isinstance(flags[0], list):
            flags = flags[0]
        m = re.fullmatch(r"([+-]?)FLAGS(\.SILENT)?", str(item).upper())
        if not m or not isinstance(which, str):
            raise ImapError("BAD Syntax: STORE set [+-]FLAGS[.SILENT] (flags)")
        wanted = set()
        for f in flags:
            canonical = next((s for s in SYSTEM_FLAGS if s.upper() == str(f).upper()), None)
            if canonical is None:
                raise ImapError("BAD Only system flags can be stored")
            wanted.add(canonical)
        if self.readonly:
            raise ImapError("NO Mailbox is read-only (EXAMINE)")
        for n, u in self.messages(which, uid):
            current = self.mb.flags.setdefault(u, set())
            if m.group(1) == "+":
                current |= wanted
            elif m.group(1) == "-":
                current -= wanted
            else:
                current.clear()
                current |= wanted
            if not m.group(2):
                uid_part = f"UID {u} " if uid else ""
                await self.reply(f"* {n} FETCH ({uid_part}FLAGS ({' '.join(sorted(current))}))")
        return "OK STORE completed"

    def remove_deleted(self):
        if not self.readonly:
            self.mb.delete([u for u in self.view if "\\Deleted" in self.mb.flags.get(u, ())])

    async def expunge(self, args, uid):
        if self.readonly:
            raise ImapError("NO Mailbox is read-only (EXAMINE)")
        self.remove_deleted()            # sync() then reports the EXPUNGEs
        return "OK EXPUNGE completed"

    async def close(self, args, uid):
        self.remove_deleted()            # silently, as RFC 3501 6.4.2 says
        self.view = None
        return "OK CLOSE completed"


# ---------------------------------------------------------------------------- main

def parse_address(text):
    """'127.0.0.1:12025' or '[::1]:12025' -> (host, port); loopback only."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            # It accepts mail from anyone and has a well-known password.
            raise argparse.ArgumentTypeError(f"{host}: only loopback addresses allowed")
    return host, int(port)


async def serve(args):
    cfg = Config(Mailbox(args.maildir), args.user, args.password, args.timeout)
    servers = []
    for proto, cls in (("smtp", SmtpSession), ("imap", ImapSession), ("pop3", Pop3Session)):
        host, port = getattr(args, proto)
        try:
            servers.append(await asyncio.start_server(
                lambda r, w, cls=cls: cls(cfg, r, w).handle(), host, port,
                limit=LINE_LIMIT, reuse_address=True))
        except OSError as e:
            log(f"cannot listen on {host}:{port} for {proto}: {e.strerror}")
            return 1
        log(f"{proto} listening on {host}:{port}")
    log(f"mailbox {args.maildir}, user {args.user!r}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log("stopping")
    for s in servers:
        s.close()
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smtp", type=parse_address, default="127.0.0.1:12025")
    p.add_argument("--imap", type=parse_address, default="127.0.0.1:12143")
    p.add_argument("--pop3", type=parse_address, default="127.0.0.1:12110")
    p.add_argument("--maildir", required=True, help="mailbox directory (created if missing)")
    p.add_argument("--user", default="demo")
    p.add_argument("--password", default="demo")
    p.add_argument("--timeout", type=float, default=600,
                   help="idle timeout in seconds (default 600)")
    args = p.parse_args()
    sys.exit(asyncio.run(serve(args)))


if __name__ == "__main__":
    main()
