"""A private Dovecot instance (IMAP + POP3, cleartext) used as mailedge's backend.

Layout under DIR:
    dovecot.conf          standalone config (no /etc/dovecot include)
    users                 passwd-file passdb/userdb: user "test" password "test", and
                          users pool001..pool500 (password "test") for add_user()
    run/                  base_dir (master.pid, sockets)
    state/                state_dir
    mail/USER/{new,cur,tmp}  Maildir of each user
    dovecot.log, dovecot-info.log, stdout.log
"""

import itertools
import os
import re
import socket
import subprocess
import threading
import time

from . import procs

IMAP_PORT = 22143
POP3_PORT = 22110
MAIL_UID = 65534  # nobody
MAIL_GID = 65534  # nogroup

CONF = """\
# Private Dovecot instance for the mailedge integration tests.
protocols = imap pop3
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
instance_name = dovecot-mailedge-it
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot-info.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
first_valid_uid = 1
first_valid_gid = 1
# Enough for the 200-concurrent-session test through mailedge.
default_process_limit = 600
default_client_limit = 4000
default_vsz_limit = 1G
mail_max_userip_connections = 1000
# Do not slow down a failed login: tests log in many times from one address.
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service auth {{
  client_limit = 4000
}}
service anvil {{
  client_limit = 4000
}}
protocol pop3 {{
  pop3_uidl_format = %08Xu%08Xv
}}
"""


class Dovecot:
    def __init__(self, basedir, imap_port=IMAP_PORT, pop3_port=POP3_PORT, extra_conf="",
                 extra_ports=()):
        """extra_conf: text appended to dovecot.conf (settings, more inet_listeners in
        `service imap-login { ... }` blocks, which Dovecot merges); extra_ports: the
        ports those listeners bind on 127.0.0.1, waited for at start (by bind, so that
        a haproxy listener does not log a connection without a header)."""
        self.dir = basedir
        self.imap_port = imap_port
        self.pop3_port = pop3_port
        self.extra_conf = extra_conf
        self.extra_ports = list(extra_ports)
        self.conf = os.path.join(basedir, "dovecot.conf")
        self.users_file = os.path.join(basedir, "users")
        self.mail_root = os.path.join(basedir, "mail")
        self.log_path = os.path.join(basedir, "dovecot.log")
        self.info_log_path = os.path.join(basedir, "dovecot-info.log")
        self.stdout_path = os.path.join(basedir, "stdout.log")
        self.proc = None
        self._stdout = None
        self._users = {}
        self._pool = []
        self._lock = threading.Lock()
        self._seq = itertools.count(1)

    def start(self, timeout=30):
        os.makedirs(self.mail_root, exist_ok=True)
        os.chmod(self.dir, 0o755)
        os.chown(self.mail_root, MAIL_UID, MAIL_GID)
        with open(self.conf, "w") as f:
            f.write(CONF.format(d=self.dir, imap=self.imap_port, pop3=self.pop3_port))
            f.write(self.extra_conf)
        self._create_users()
        self._stdout = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self._stdout,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            procs.wait_for_ports([self.imap_port, self.pop3_port], timeout=timeout,
                                 proc=self.proc, what="dovecot")
            deadline = time.monotonic() + timeout
            while any(procs.port_bindable(p) for p in self.extra_ports):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dovecot: ports {self.extra_ports} not bound")
                time.sleep(0.05)
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}\n{self.log_text()[-4000:]}") from None
        return self

    def stop(self):
        if self.proc is not None:
            procs.stop_pid(self.proc.pid, term_timeout=15, kill_timeout=5, popen=self.proc)
            # Children that outlived the master (bounded: one SIGKILL to the group).
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
        if self._stdout is not None:
            self._stdout.close()

    # -- users and mail ------------------------------------------------------------
    POOL_SIZE = 500

    def _write_users(self):
        lines = [f"{u}:{{PLAIN}}{p}:{MAIL_UID}:{MAIL_GID}::{self.mail_root}/{u}::\n"
                 for u, p in self._users.items()]
        tmp = self.users_file + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(lines)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.users_file)

    def _make_maildir(self, name):
        home = os.path.join(self.mail_root, name)
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(home, sub), exist_ok=True)
        for root, _dirs, _files in os.walk(home):
            os.chown(root, MAIL_UID, MAIL_GID)

    def _create_users(self):
        """User "test" (password "test") plus a pool poolNNN (password "test") that
        add_user() hands out, each with an empty Maildir. The pool is written before
        Dovecot starts: Dovecot rereads a changed passwd-file at most once a second,
        so users added on the fly could be missed."""
        self._users = {"test": "test"}
        self._make_maildir("test")
        for i in range(1, self.POOL_SIZE + 1):
            self._users[f"pool{i:03d}"] = "test"
        self._write_users()
        self._pool = [u for u in self._users if u != "test"]

    def add_user(self):
        """A fresh user (password "test") with an empty Maildir; returns its name."""
        with self._lock:
            if not self._pool:
                raise RuntimeError("Dovecot user pool exhausted; raise POOL_SIZE")
            name = self._pool.pop(0)
            self._make_maildir(name)
        return name

    def place_message(self, user, data):
        """Deliver data (bytes, CRLF line endings recommended so IMAP/POP3 serve it
        unchanged) into USER's Maildir new/ the way an MDA would: write in tmp/,
        rename into new/. Returns the file path."""
        home = os.path.join(self.mail_root, user)
        n = next(self._seq)
        base = f"{int(time.time())}.M{n}P{os.getpid()}.{socket.gethostname()}"
        tmp = os.path.join(home, "tmp", base)
        final = os.path.join(home, "new", base)
        with open(tmp, "wb") as f:
            f.write(data)
        os.chown(tmp, MAIL_UID, MAIL_GID)
        os.chmod(tmp, 0o600)
        os.rename(tmp, final)
        return final

    # -- logs ----------------------------------------------------------------------
    def log_text(self):
        out = []
        for p in (self.log_path, self.info_log_path, self.stdout_path):
            try:
                with open(p, errors="replace") as f:
                    out.append(f.read())
            except FileNotFoundError:
                pass
        return "".join(out)

    def wait_for_log(self, pattern, timeout=30):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"pattern {pattern!r} not in Dovecot log after "
                                     f"{timeout}s; tail:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)
