"""Start, watch and stop the mailedge daemon under test."""

import os
import re
import signal
import subprocess
import time

from . import procs

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CERT_DIR = os.path.join(REPO_ROOT, "certs-example", "out")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer", "ERROR: MemorySanitizer")


def binary_path():
    path = os.environ.get("MAILEDGE_BIN", "build/mailedge")
    if not os.path.isabs(path):
        path = os.path.join(REPO_ROOT, path)
    return path


def cert(name):
    return os.path.join(CERT_DIR, name)


def ensure_certs():
    """Run certs-example/mkcerts.sh when the example certificates are missing."""
    needed = ["ca.crt", "server-rsa.crt", "server-rsa.key", "server-ecdsa.crt",
              "server-ecdsa.key", "server-rsa.pem", "client.crt", "client.key"]
    if all(os.path.isfile(cert(n)) and os.path.getsize(cert(n)) > 0 for n in needed):
        return
    subprocess.run(["bash", os.path.join(REPO_ROOT, "certs-example", "mkcerts.sh")],
                   check=True, timeout=120, stdin=subprocess.DEVNULL,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def render(sections):
    """sections: list of (header, [(key, value), ...]) -> INI text. A value of None
    drops the key, so tests can remove a default."""
    out = []
    for header, items in sections:
        if out:
            out.append("")
        out.append(f"[{header}]")
        for k, v in items:
            if v is not None:
                out.append(f"{k} = {v}")
    return "\n".join(out) + "\n"


def line_of(text, needle, start_after=None):
    """1-based number of the first line of text containing needle (after the first
    line containing start_after, when given)."""
    lines = text.splitlines()
    begin = 0
    if start_after is not None:
        begin = next(i for i, l in enumerate(lines) if start_after in l) + 1
    for i in range(begin, len(lines)):
        if needle in lines[i]:
            return i + 1
    raise ValueError(f"{needle!r} not in config")


def listen_ports(text):
    return [int(m.group(1)) for m in re.finditer(r"^\s*listen\s*=\s*\S+:(\d+)\s*$", text,
                                                 re.M)]


class Mailedge:
    def __init__(self, workdir, config_text, binary=None, name="mailedge"):
        self.binary = binary or binary_path()
        self.dir = workdir
        self.name = name
        self.config_text = config_text
        self.config_path = os.path.join(workdir, "mailedge.ini")
        self.stderr_path = os.path.join(workdir, "stderr.log")
        self.pidfile = os.path.join(workdir, "mailedge.pid")
        self.ports = listen_ports(config_text)
        self.proc = None
        self._err = None
        self.stop_how = None

    def start(self, timeout=20):
        os.makedirs(self.dir, exist_ok=True)
        with open(self.config_path, "w") as f:
            f.write(self.config_text)
        env = dict(os.environ)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([self.binary, "-c", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._err,
                                     stderr=self._err, env=env, start_new_session=True)
        with open(self.pidfile, "w") as f:
            f.write(f"{self.proc.pid}\n")
        try:
            procs.wait_for_ports(self.ports, timeout=timeout, proc=self.proc,
                                 what=f"mailedge ({self.name})")
        except RuntimeError as e:
            self.stop()
            raise RuntimeError(f"{e}\nconfig:\n{self.config_text}\nstderr:\n"
                               f"{self.log_text()[-4000:]}") from None
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        assert self.alive(), (f"mailedge ({self.name}) died with status "
                              f"{self.proc.returncode}; stderr tail:\n{self.log_text()[-4000:]}")

    def stop(self, term_timeout=10):
        """SIGTERM, then SIGKILL after a bound. Returns a list of problems (empty when
        it stopped cleanly): killed by a signal, needed SIGKILL, sanitizer reports."""
        if self.proc is None:
            return []
        was_running = self.proc.poll() is None
        if was_running:
            self.stop_how = procs.stop_pid(self.proc.pid, term_timeout=term_timeout,
                                           kill_timeout=5, popen=self.proc)
        else:
            self.stop_how = "exited-before-stop"
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # any helper processes it forked
        except OSError:
            pass
        if self._err is not None:
            self._err.close()
            self._err = None
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
        return self.problems()

    def problems(self):
        out = []
        rc = self.proc.returncode if self.proc else None
        if self.stop_how == "kill":
            out.append("did not exit within the bound after SIGTERM (SIGKILLed)")
        elif self.stop_how == "exited-before-stop":
            out.append(f"had already exited (status {rc}) before the test stopped it")
        elif rc is not None and rc < 0:
            out.append(f"exited on signal {signal.Signals(-rc).name} after SIGTERM")
        elif rc not in (None, 0):
            out.append(f"exited with status {rc} after SIGTERM")
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                out.append(f"stderr contains {marker!r}")
        return out

    def log_text(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_lines(self, pattern):
        rx = re.compile(pattern)
        return [l for l in self.log_text().splitlines() if rx.search(l)]

    def wait_for_log(self, pattern, timeout=15, count=1):
        """Wait until at least `count` stderr lines match pattern; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines(pattern)
            if len(lines) >= count:
                return lines
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} line(s) matching {pattern!r} expected in "
                                     f"mailedge stderr within {timeout}s, found {len(lines)};"
                                     f" tail:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)

    def peak_rss_kb(self):
        """VmHWM of mailedge plus any worker processes it forked (kB)."""
        if not self.alive():
            return None
        total = 0
        for pid in [self.proc.pid] + procs.children_of(self.proc.pid):
            total += procs.vm_status(pid, "VmHWM") or 0
        return total


def run_tool(args, timeout=30):
    """Run the mailedge binary with args (e.g. -t -c FILE, -V); returns
    CompletedProcess with text stdout/stderr."""
    return subprocess.run([binary_path(), *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, errors="replace",
                          timeout=timeout)
