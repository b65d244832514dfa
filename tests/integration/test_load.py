"""Large messages and many concurrent sessions through mailedge. Times and memory are
printed (run with -s to see them), never asserted."""

import threading
import time

import pytest

from harness.clients import imaps_fetch, imaps_login, pop3s_retr, run_threads, smtps_send
from harness.messages import make_big_message, make_message
from harness.ports import IMAPS_PORT, POP3S_PORT, SMTPS_PORT
from harness.postfix import split_prepended

pytestmark = [pytest.mark.mailedge, pytest.mark.slow]

BIG = 20 * 1024 * 1024


def test_smtps_20mb_message_intact(mailedge, postfix):
    tok, msg = make_big_message(BIG)
    t0 = time.monotonic()
    smtps_send(SMTPS_PORT, msg, timeout=300)
    t1 = time.monotonic()
    delivered = postfix.wait_for_message(f"<{tok}@example.test>", timeout=300)
    t2 = time.monotonic()
    split_prepended(delivered, msg)
    print(f"\nSMTPS 20 MB: submitted in {t1 - t0:.2f}s "
          f"({len(msg) / (t1 - t0) / 1e6:.1f} MB/s), delivered after {t2 - t0:.2f}s")
    mailedge.assert_alive()


def test_imaps_20mb_message_intact(mailedge, dovecot):
    user = dovecot.add_user()
    tok, msg = make_big_message(BIG)
    dovecot.place_message(user, msg)
    t0 = time.monotonic()
    body = imaps_fetch(IMAPS_PORT, user, timeout=300)
    dt = time.monotonic() - t0
    assert len(body) == len(msg)
    assert body == msg
    print(f"\nIMAPS 20 MB: fetched in {dt:.2f}s ({len(msg) / dt / 1e6:.1f} MB/s)")
    mailedge.assert_alive()


def test_pop3s_20mb_message_intact(mailedge, dovecot):
    user = dovecot.add_user()
    tok, msg = make_big_message(BIG)
    dovecot.place_message(user, msg)
    t0 = time.monotonic()
    body = pop3s_retr(POP3S_PORT, user, timeout=300)
    dt = time.monotonic() - t0
    assert body == msg
    print(f"\nPOP3S 20 MB: retrieved in {dt:.2f}s ({len(msg) / dt / 1e6:.1f} MB/s)")


N_CONCURRENT = 200


def test_200_concurrent_imaps_sessions(mailedge, dovecot):
    """200 IMAPS sessions all logged in at the same time (a barrier holds them), then
    each fetches the message byte-exact and logs out."""
    user = dovecot.add_user()
    _tok, msg = make_message(to=f"{user}@example.test")
    dovecot.place_message(user, msg)
    # Let Dovecot move the message to cur/ and assign UID 1 before the stampede.
    assert imaps_fetch(IMAPS_PORT, user) == msg

    barrier = threading.Barrier(N_CONCURRENT, timeout=120)
    rss_at_peak = []

    def session(i):
        m = imaps_login(IMAPS_PORT, user, timeout=120)
        try:
            if barrier.wait() == 0:
                rss_at_peak.append(mailedge.peak_rss_kb())
            typ, _ = m.select("INBOX", readonly=True)
            assert typ == "OK"
            typ, data = m.uid("FETCH", "1", "(BODY.PEEK[])")
            assert typ == "OK" and data[0][1] == msg
        except BaseException:
            barrier.abort()
            raise
        finally:
            m.logout()

    t0 = time.monotonic()
    results = run_threads(N_CONCURRENT, session, timeout=240)
    dt = time.monotonic() - t0
    failures = [(i, r) for i, r in enumerate(results) if r is not None]
    assert not failures, (f"{len(failures)} of {N_CONCURRENT} sessions failed, first: "
                          f"{failures[:3]}")
    mailedge.assert_alive()
    print(f"\n{N_CONCURRENT} concurrent IMAPS sessions in {dt:.2f}s; mailedge VmHWM "
          f"{mailedge.peak_rss_kb()} kB (at the barrier: {rss_at_peak[:1]} kB)")


def test_200_concurrent_pop3s_sessions(mailedge, dovecot):
    """200 POP3S sessions, one user each, run concurrently."""
    users = []
    for _ in range(N_CONCURRENT):
        try:
            users.append(dovecot.add_user())
        except RuntimeError:
            break
    if len(users) < N_CONCURRENT:
        pytest.skip(f"only {len(users)} spare Dovecot users left in the pool")
    msgs = []
    for u in users:
        msgs.append(make_message(to=f"{u}@example.test")[1])
        dovecot.place_message(u, msgs[-1])

    t0 = time.monotonic()
    results = run_threads(N_CONCURRENT,
                          lambda i: _check(pop3s_retr(POP3S_PORT, users[i], timeout=120),
                                           msgs[i]),
                          timeout=240)
    dt = time.monotonic() - t0
    failures = [(i, r) for i, r in enumerate(results) if r is not None]
    assert not failures, f"{len(failures)} failed, first: {failures[:3]}"
    mailedge.assert_alive()
    print(f"\n{N_CONCURRENT} concurrent POP3S sessions in {dt:.2f}s; mailedge VmHWM "
          f"{mailedge.peak_rss_kb()} kB")


def _check(got, want):
    assert got == want
