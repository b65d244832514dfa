"""Clean up what an earlier, interrupted run left behind: its temp directory, its
Postfix/Dovecot/mailedge processes (found through their PID files and checked by name
before being signalled), and stray listeners on the fixed test ports."""

import glob
import os
import shutil
import subprocess

from . import procs
from .postfix import remove_from_default_main_cf

BASE_PREFIX = "/tmp/mailedge-it-"
# Process names we may stop when one of them squats a test port.
OWNED_NAMES = {"master", "dovecot", "mailedge"}
CHILD_NAMES = {"smtpd", "imap-login", "pop3-login", "imap", "pop3"}


def _stop_checked(pid, names):
    if pid and procs.pid_alive(pid):
        comm = procs.pid_comm(pid)
        if comm in names or any(n in procs.pid_cmdline(pid) for n in names):
            procs.stop_pid(pid, term_timeout=10, kill_timeout=5)


def cleanup_old_runs(current=None):
    for d in glob.glob(BASE_PREFIX + "*"):
        if current and os.path.abspath(d) == os.path.abspath(current):
            continue
        owner = procs.read_pidfile(os.path.join(d, "owner.pid"))
        if owner and owner != os.getpid() and procs.pid_alive(owner) and \
                "pytest" in procs.pid_cmdline(owner):
            continue  # another live test run owns it
        # postfix/ and dovecot/, plus the extra instances of the identity tests
        # (postfix-ident/, dovecot-haproxy/, ...).
        for pfdir in glob.glob(os.path.join(d, "postfix*")):
            _stop_postfix(pfdir)
        for dcdir in glob.glob(os.path.join(d, "dovecot*")):
            _stop_checked(procs.read_pidfile(os.path.join(dcdir, "run", "master.pid")),
                          {"dovecot"})
        for pidfile in glob.glob(os.path.join(d, "mailedge", "*", "mailedge.pid")):
            _stop_checked(procs.read_pidfile(pidfile), {"mailedge"})
        shutil.rmtree(d, ignore_errors=True)


def _stop_postfix(pfdir):
    confdir = os.path.join(pfdir, "etc")
    master = procs.read_pidfile(os.path.join(pfdir, "spool", "pid", "master.pid"))
    if master and procs.pid_alive(master) and procs.pid_comm(master) == "master":
        try:
            subprocess.run(["postfix", "-c", confdir, "stop"], timeout=30,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        except (subprocess.TimeoutExpired, OSError):
            pass
        _stop_checked(master, {"master"})
    for entry in os.listdir("/proc"):
        if entry.isdigit() and \
                procs.pid_environ(int(entry)).get("MAIL_CONFIG") == confdir:
            procs.stop_pid(int(entry), term_timeout=3, kill_timeout=3)
    remove_from_default_main_cf(confdir)


def started_by_harness(pid):
    """True only for processes this harness starts: mailedge/dovecot with a config
    under /tmp/mailedge-it-*, Dovecot children (instance name), Postfix processes
    whose MAIL_CONFIG is under /tmp/mailedge-it-*. Anything else is left alone."""
    cmd = procs.pid_cmdline(pid)
    if BASE_PREFIX in cmd or "dovecot-mailedge-it/" in cmd:
        return True
    return procs.pid_environ(pid).get("MAIL_CONFIG", "").startswith(BASE_PREFIX)


def free_ports(ports):
    """Make sure the fixed test ports are free, stopping leftovers of this harness's
    own daemons from an interrupted run. Raises RuntimeError when another process
    (e.g. a mailedge someone started by hand) holds one."""
    for port in ports:
        if procs.port_bindable(port):
            continue
        for pid in procs.listening_pids(port):
            target = pid
            if procs.pid_comm(pid) in CHILD_NAMES:
                parent = procs.ppid_of(pid)
                if parent and procs.pid_comm(parent) in OWNED_NAMES:
                    target = parent
            if procs.pid_comm(target) in OWNED_NAMES and started_by_harness(target):
                procs.stop_pid(target, term_timeout=10, kill_timeout=5)
        if not procs.port_bindable(port):
            holders = {p: procs.pid_cmdline(p) for p in procs.listening_pids(port)}
            raise RuntimeError(f"test port 127.0.0.1:{port} is in use by "
                               f"{holders or 'a socket in TIME_WAIT'}; stop it and rerun")
