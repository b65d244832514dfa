"""A private Postfix instance used as mailedge's cleartext SMTP backend.

Layout under DIR:
    etc/main.cf, etc/master.cf   the instance's configuration (postfix -c DIR/etc)
    spool/                       queue_directory (owned root, subdirs postfix)
    data/                        data_directory (owned postfix)
    vmail/mailbox/{new,cur,tmp}  every accepted message, delivered by virtual(8)
    maillog                      Postfix's own log, written by postlogd

All mail for any address @example.test lands in one Maildir (static map); tests find
their message by a unique token (Message-ID). virtual(8) writes the message with LF
line endings and prepends Return-Path, X-Original-To, Delivered-To and Received.
"""

import os
import pwd
import re
import subprocess
import time

from . import procs

DEFAULT_PORT = 22025
MAIN_CF_DEFAULT = "/etc/postfix/main.cf"
# Headers Postfix adds in front of the original message on SMTP receipt + delivery.
PREPENDED = ("Return-Path:", "X-Original-To:", "Delivered-To:", "Received:")
MAILBOX_UID = 65534  # nobody
MAILBOX_GID = 65534  # nogroup
MESSAGE_SIZE_LIMIT = 64 * 1024 * 1024

MASTER_CF = """\
# Minimal master.cf for the mailedge integration tests: no chroot anywhere.
{listen} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
# Private Postfix instance for the mailedge integration tests.
compatibility_level = 3.6
queue_directory = {d}/spool
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-mailedge-it
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
myhostname = backend.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost =
# Nothing ever leaves this machine.
default_transport = error:outbound mail is disabled in the tests
relay_transport = error:outbound mail is disabled in the tests
local_transport = error:local delivery is disabled in the tests
alias_maps =
alias_database =
biff = no
# Leave message headers exactly as the client sent them.
local_header_rewrite_clients =
always_add_missing_headers = no
virtual_mailbox_domains = example.test
virtual_mailbox_base = {d}/vmail
virtual_mailbox_maps = static:mailbox/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_mailbox_limit = 0
message_size_limit = {size_limit}
smtpd_banner = $myhostname ESMTP Postfix backend for mailedge tests
"""


def ensure_default_main_cf(confdir):
    """/etc/postfix/main.cf must list confdir in alternate_config_directories (Postfix
    requires it for non-default instances used by unprivileged programs). Create a
    minimal default main.cf when Debian left it out ("No configuration"). Idempotent;
    drops entries for instance directories that no longer exist."""
    try:
        with open(MAIN_CF_DEFAULT) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = ["# Minimal default main.cf written by the mailedge integration tests.",
                 "compatibility_level = 3.6"]
    # Join continuation lines of alternate_config_directories into one value.
    out, current, i = [], [], 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"\s*alternate_config_directories\s*=", line):
            value = line.split("=", 1)[1]
            i += 1
            while i < len(lines) and lines[i][:1] in (" ", "\t") and lines[i].strip():
                value += " " + lines[i]
                i += 1
            current.extend(v for v in re.split(r"[\s,]+", value) if v)
            continue
        out.append(line)
        i += 1
    keep = []
    for d in current:
        is_ours = "/mailedge-it-" in d
        if (not is_ours or os.path.isdir(d)) and d not in keep:
            keep.append(d)
    if confdir not in keep:
        keep.append(confdir)
    out.append("alternate_config_directories = " + " ".join(keep))
    new = "\n".join(out) + "\n"
    os.makedirs(os.path.dirname(MAIN_CF_DEFAULT), exist_ok=True)
    tmp = MAIN_CF_DEFAULT + ".mailedge-it.tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, MAIN_CF_DEFAULT)


def remove_from_default_main_cf(confdir):
    try:
        with open(MAIN_CF_DEFAULT) as f:
            text = f.read()
    except FileNotFoundError:
        return
    lines = []
    for line in text.splitlines():
        m = re.match(r"(\s*alternate_config_directories\s*=)(.*)", line)
        if m:
            vals = [v for v in re.split(r"[\s,]+", m.group(2)) if v and v != confdir]
            line = m.group(1) + " " + " ".join(vals)
        lines.append(line)
    tmp = MAIN_CF_DEFAULT + ".mailedge-it.tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, MAIN_CF_DEFAULT)


def service_line(port, options):
    """A master.cf smtpd service on 127.0.0.1:port with -o name=value overrides."""
    opts = "".join(f"\n  -o {k}={v}" for k, v in options)
    return f"127.0.0.1:{port} inet n - n - - smtpd{opts}\n"


class Postfix:
    def __init__(self, basedir, port=DEFAULT_PORT, extra_services=(), extra_main=""):
        """extra_services: [(port, [(param, value), ...]), ...] more smtpd services
        (each on 127.0.0.1:port, with -o overrides); extra_main: text appended to
        main.cf."""
        self.dir = basedir
        self.port = port
        self.extra_services = list(extra_services)
        self.extra_main = extra_main
        self.confdir = os.path.join(basedir, "etc")
        self.spool = os.path.join(basedir, "spool")
        self.data = os.path.join(basedir, "data")
        self.vmail = os.path.join(basedir, "vmail")
        self.maildir = os.path.join(self.vmail, "mailbox")
        self.maillog = os.path.join(basedir, "maillog")
        self.master_pid = None

    # -- lifecycle ---------------------------------------------------------------
    def _run(self, *args, timeout=60, check=True):
        cmd = ["postfix", "-c", self.confdir, *args]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n"
                               f"{r.stdout.decode(errors='replace')}\n{self.log_text()[-4000:]}")
        return r

    def write_config(self):
        for d in (self.dir, self.confdir, self.spool, self.data, self.vmail):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.dir, 0o755)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data, pf.pw_uid, pf.pw_gid)
        os.chmod(self.data, 0o700)
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(self.maildir, sub), exist_ok=True)
        for root, dirs, _files in os.walk(self.vmail):
            os.chown(root, MAILBOX_UID, MAILBOX_GID)
            for d in dirs:
                os.chown(os.path.join(root, d), MAILBOX_UID, MAILBOX_GID)
        with open(os.path.join(self.confdir, "main.cf"), "w") as f:
            base = MAIN_CF.format(d=self.dir, uid=MAILBOX_UID, gid=MAILBOX_GID,
                                  size_limit=MESSAGE_SIZE_LIMIT)
            # extra_main replaces parameters of the same name (Postfix warns about
            # "overriding earlier entry" otherwise).
            names = {l.split("=", 1)[0].strip() for l in self.extra_main.splitlines()
                     if "=" in l and not l.startswith(("#", " ", "\t"))}
            f.write("".join(l for l in base.splitlines(True)
                            if "=" not in l or l.split("=", 1)[0].strip() not in names))
            f.write(self.extra_main)
        with open(os.path.join(self.confdir, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(listen=f"127.0.0.1:{self.port}"))
            for port, options in self.extra_services:
                f.write(service_line(port, options))
        ensure_default_main_cf(self.confdir)

    def start(self, timeout=60):
        self.write_config()
        # Creates the queue directories with the right owners, then sanity-checks.
        self._run("set-permissions", timeout=120)
        self._run("check", timeout=60)
        self._run("start", timeout=60)
        pidfile = os.path.join(self.spool, "pid", "master.pid")
        deadline = time.monotonic() + timeout
        while True:
            self.master_pid = procs.read_pidfile(pidfile)
            # Extra services are checked by bind, not connect: a connect would make a
            # PROXY-protocol smtpd log a lost connection.
            if self.master_pid and procs.port_accepts(self.port) and not any(
                    procs.port_bindable(p) for p, _ in self.extra_services):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"postfix did not come up on port {self.port}:\n"
                                   f"{self.log_text()[-4000:]}")
            time.sleep(0.1)
        return self

    def instance_pids(self):
        """Every process started for this instance (master exports MAIL_CONFIG)."""
        pids = set()
        if self.master_pid and procs.pid_alive(self.master_pid):
            pids.add(self.master_pid)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                env = procs.pid_environ(int(entry))
                if env.get("MAIL_CONFIG") == self.confdir:
                    pids.add(int(entry))
        return pids

    def stop(self):
        try:
            self._run("stop", timeout=30, check=False)
        except subprocess.TimeoutExpired:
            pass
        if self.master_pid:
            procs.stop_pid(self.master_pid, term_timeout=15, kill_timeout=5)
        for pid in self.instance_pids():
            procs.stop_pid(pid, term_timeout=3, kill_timeout=3)
        remove_from_default_main_cf(self.confdir)

    # -- helpers for tests ---------------------------------------------------------
    def log_text(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_for_log(self, pattern, timeout=30):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"pattern {pattern!r} not in Postfix log after "
                                     f"{timeout}s; tail:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)

    def delivered_files(self):
        out = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir, sub)
            try:
                out.extend(os.path.join(d, n) for n in os.listdir(d))
            except FileNotFoundError:
                pass
        return out

    def wait_for_message(self, token, timeout=60):
        """Return the bytes of the delivered message containing token (bytes), polling
        the Maildir until it appears (bounded)."""
        if isinstance(token, str):
            token = token.encode()
        deadline = time.monotonic() + timeout
        while True:
            for path in self.delivered_files():
                try:
                    with open(path, "rb") as f:
                        # Message-ID sits in the headers: the first 64 KiB suffice.
                        head = f.read(65536)
                        if token in head:
                            return head + f.read()
                except FileNotFoundError:
                    continue
            if time.monotonic() > deadline:
                raise AssertionError(f"no message with {token!r} delivered to "
                                     f"{self.maildir} within {timeout}s; Postfix log tail:\n"
                                     f"{self.log_text()[-3000:]}")
            time.sleep(0.2)


def to_lf(data):
    return data.replace(b"\r\n", b"\n")


def split_prepended(delivered, original):
    """Check that `delivered` is Postfix's prepended headers followed by `original`
    unchanged (modulo CRLF -> LF, which is how Postfix stores mail). Returns the
    prepended header block; raises AssertionError otherwise."""
    orig = to_lf(original)
    if not delivered.endswith(orig):
        # Find the first difference to make failures readable.
        idx = delivered.find(orig[:200])
        raise AssertionError(
            "delivered message does not end with the original message "
            f"(delivered {len(delivered)} bytes, original {len(orig)} bytes (LF form), "
            f"start of original found at {idx})")
    prefix = delivered[:len(delivered) - len(orig)]
    for line in prefix.decode(errors="replace").splitlines():
        if line[:1] in (" ", "\t"):
            continue
        assert line.startswith(PREPENDED), f"unexpected prepended line {line!r}"
    return prefix
