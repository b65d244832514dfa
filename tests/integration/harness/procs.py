"""Process and port helpers shared by the integration fixtures.

Everything here is bounded: every wait has a deadline, every kill targets one PID
(never a name pattern), and only loopback addresses are used.
"""

import errno
import os
import signal
import socket
import time

LOOPBACK = "127.0.0.1"


def port_accepts(port, host=LOOPBACK, timeout=0.5):
    """True when a TCP connect to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_bindable(port, host=LOOPBACK):
    """True when nothing holds host:port (a listener would be able to bind it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_for_ports(ports, timeout=20.0, proc=None, what="service"):
    """Wait until every port accepts a connection. If proc (a Popen) exits first,
    raise at once. Raises RuntimeError on timeout."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before "
                               f"listening on {pending}")
        pending = [p for p in pending if not port_accepts(p)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: ports {pending} not accepting after {timeout}s")
        time.sleep(0.1)


def pid_alive(pid):
    """True when pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # state is the field after the ")" that closes comm
    try:
        state = stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3]
    except ValueError:
        return False
    return state not in (b"Z", b"X")


def pid_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pid_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def pid_environ(pid):
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode(errors="replace")] = v.decode(errors="replace")
    return env


def read_pidfile(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def wait_pid_gone(pid, timeout, popen=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return True
        elif not pid_alive(pid):
            return True
        time.sleep(0.05)
    if popen is not None:
        return popen.poll() is not None
    return not pid_alive(pid)


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise


def stop_pid(pid, term_timeout=10.0, kill_timeout=5.0, popen=None):
    """SIGTERM pid, wait up to term_timeout, then SIGKILL and wait up to kill_timeout.
    Returns "gone", "term" or "kill" (how it ended)."""
    if pid is None:
        return "gone"
    if popen is None and not pid_alive(pid):
        return "gone"
    if popen is not None and popen.poll() is not None:
        return "gone"
    _signal(pid, signal.SIGTERM)
    if wait_pid_gone(pid, term_timeout, popen):
        return "term"
    _signal(pid, signal.SIGKILL)
    wait_pid_gone(pid, kill_timeout, popen)
    return "kill"


def listening_pids(port):
    """PIDs holding a listening TCP socket on port (any local address), via /proc."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state, inode = parts[1], parts[3], parts[9]
                    if state != "0A":  # LISTEN
                        continue
                    if int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except OSError:
            continue
    if not inodes:
        return set()
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fddir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fddir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fddir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                pids.add(int(entry))
                break
    return pids


def ppid_of(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and ppid_of(int(entry)) == pid:
            kids.append(int(entry))
    return kids


def vm_status(pid, key):
    """Value in kB of a /proc/PID/status field such as VmHWM or VmRSS, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None
