"""`mailedge -t -c FILE` (configuration check) and `mailedge -V`."""

import os
import re
import shutil
import subprocess

import pytest

from harness.configs import default_config
from harness.mailedge import REPO_ROOT, binary_path, cert, run_tool

pytestmark = pytest.mark.mailedge


def write(config_dir, name, text):
    path = os.path.join(config_dir, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def check(path):
    r = run_tool(["-t", "-c", path])
    return r.returncode, r.stdout + r.stderr


def assert_error_at(path, lines):
    """-t fails and reports PATH:LINE: message for one of the given line numbers."""
    rc, out = check(path)
    assert rc != 0, f"-t accepted a bad config:\n{out}"
    found = [int(n) for n in re.findall(rf"^{re.escape(path)}:(\d+): \S", out, re.M)]
    assert found, f"no '{path}:LINE: message' in output:\n{out}"
    assert set(found) & set(lines), f"expected line(s) {lines}, got {found}:\n{out}"
    return out


def lineno(text, startswith, after=None):
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next(i for i, l in enumerate(lines) if l.startswith(after)) + 1
    return next(i + 1 for i in range(start, len(lines)) if lines[i].startswith(startswith))


def test_version_mentions_wolfssl(mailedge_bin):
    r = run_tool(["-V"])
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "mailedge" in out.lower(), out
    assert "wolfssl" in out.lower(), out


def test_good_config_passes(mailedge_bin, config_dir):
    path = write(config_dir, "good.ini", default_config())
    rc, out = check(path)
    assert rc == 0, out


def test_shipped_example_config_syntax(mailedge_bin, config_dir):
    """conf/mailedge.ini points at /etc/ssl/mail: with the example certificates swapped
    in, it must pass the check."""
    src = os.path.join(REPO_ROOT, "conf", "mailedge.ini")
    if not os.path.exists(src):
        pytest.skip("conf/mailedge.ini not found")
    text = open(src).read()
    text = text.replace("/etc/ssl/mail/fullchain.pem", cert("server-rsa.crt"))
    text = text.replace("/etc/ssl/mail/privkey.pem", cert("server-rsa.key"))
    path = write(config_dir, "example.ini", text)
    rc, out = check(path)
    assert rc == 0, out


def test_unknown_section(mailedge_bin, config_dir):
    text = default_config() + "\n[frontend web]\nlisten = 127.0.0.1:21480\n"
    path = write(config_dir, "unknown-section.ini", text)
    assert_error_at(path, [lineno(text, "[frontend web]")])


def test_unknown_key(mailedge_bin, config_dir):
    text = default_config().replace("[listener imaps]\n", "[listener imaps]\ncolour = blue\n")
    path = write(config_dir, "unknown-key.ini", text)
    assert_error_at(path, [lineno(text, "colour = blue")])


def test_unknown_global_key(mailedge_bin, config_dir):
    text = default_config().replace("log_level = info\n", "log_level = info\nverbose = yes\n")
    path = write(config_dir, "unknown-global.ini", text)
    assert_error_at(path, [lineno(text, "verbose = yes")])


@pytest.mark.parametrize("old,new", [
    ("handshake_timeout = 5s", "handshake_timeout = banana"),
    ("handshake_timeout = 5s", "handshake_timeout = -5s"),
    ("protocol = imap", "protocol = ftp"),
    ("tls = implicit", "tls = sometimes"),
    ("listen = 127.0.0.1:21993", "listen = 127.0.0.1:99999"),
    ("listen = 127.0.0.1:21993", "listen = nowhere"),
    ("log_level = info", "log_level = loud"),
    ("connect_timeout = 5s", "connect_timeout = soon"),
    ("backend = imap", "backend = nosuchbackend"),
    ("address = 127.0.0.1:22143", "address = 127.0.0.1:"),
], ids=["duration-word", "duration-negative", "protocol", "tls-mode", "port-range",
        "listen-no-port", "log-level", "connect-timeout", "unknown-backend",
        "address-no-port"])
def test_bad_value(mailedge_bin, config_dir, old, new):
    text = default_config()
    assert old in text, old
    text = text.replace(old, new, 1)
    path = write(config_dir, "bad-value.ini", text)
    assert_error_at(path, [text.splitlines().index(new) + 1])


def test_missing_cert(mailedge_bin, config_dir):
    text = default_config().replace(cert("server-ecdsa.crt"), "/nonexistent/server.crt")
    path = write(config_dir, "missing-cert.ini", text)
    assert_error_at(path, [lineno(text, "cert = /nonexistent/server.crt")])


def test_missing_key(mailedge_bin, config_dir):
    text = default_config().replace(cert("server-ecdsa.key"), "/nonexistent/server.key")
    path = write(config_dir, "missing-key.ini", text)
    assert_error_at(path, [lineno(text, "key = /nonexistent/server.key")])


def test_key_does_not_match_cert(mailedge_bin, config_dir):
    """RSA certificate with the ECDSA key: reported at the key (or cert) line."""
    text = default_config().replace(f"key = {cert('server-rsa.key')}",
                                    f"key = {cert('server-ecdsa.key')}", 1)
    path = write(config_dir, "mismatch.ini", text)
    section = lineno(text, "[listener smtps]")
    out = assert_error_at(path, [lineno(text, "key = ", after="[listener smtps]"),
                                 lineno(text, "cert = ", after="[listener smtps]"), section])
    assert "match" in out.lower(), out


def test_key_readable_by_others_refused(mailedge_bin, config_dir):
    loose = os.path.join(config_dir, "loose.key")
    shutil.copyfile(cert("server-ecdsa.key"), loose)
    os.chmod(loose, 0o644)
    text = default_config().replace(cert("server-ecdsa.key"), loose)
    path = write(config_dir, "loose-key.ini", text)
    assert_error_at(path, [lineno(text, f"key = {loose}")])


def test_combined_pem_readable_by_others_refused(mailedge_bin, config_dir):
    loose = os.path.join(config_dir, "loose.pem")
    shutil.copyfile(cert("server-rsa.pem"), loose)
    os.chmod(loose, 0o644)
    text = default_config().replace(cert("server-rsa.pem"), loose)
    path = write(config_dir, "loose-pem.ini", text)
    assert_error_at(path, [lineno(text, f"cert = {loose}")])


def test_key_mode_0600_copy_accepted(mailedge_bin, config_dir):
    tight = os.path.join(config_dir, "tight.key")
    shutil.copyfile(cert("server-ecdsa.key"), tight)
    os.chmod(tight, 0o600)
    text = default_config().replace(cert("server-ecdsa.key"), tight)
    path = write(config_dir, "tight-key.ini", text)
    rc, out = check(path)
    assert rc == 0, out


def test_missing_config_file(mailedge_bin, config_dir):
    rc, out = check(os.path.join(config_dir, "does-not-exist.ini"))
    assert rc != 0
    assert "does-not-exist.ini" in out, out


def test_daemon_refuses_to_start_with_bad_config(mailedge_bin, config_dir):
    text = default_config().replace("protocol = imap", "protocol = ftp")
    path = write(config_dir, "bad-start.ini", text)
    r = subprocess.run([binary_path(), "-c", path], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert re.search(rf"{re.escape(path)}:\d+: ", r.stdout + r.stderr), r.stderr
