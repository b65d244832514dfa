#!/usr/bin/env bash
# Self-test of the demo backend alone (no mailedge, no TLS): start demo/demo_backend.py
# on its own ports and drive it with real clients over cleartext. Python's smtplib sends
# a message; imaplib, poplib and curl (imap://, pop3://) must read it back byte for byte;
# curl and swaks send too. Also: pipelining, cross-protocol deletion, junk input and 50
# concurrent clients, after which the backend must still be alive.
#
# usage: demo/selftest.sh     exit status 0 = pass; otherwise the reason on stderr.
# env:   SELFTEST_PORTS="SMTP IMAP POP3"   default "13025 13143 13110" (127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."

python=/usr/bin/python3      # Debian's: the tests use the standard library only
read -r smtp imap pop3 <<<"${SELFTEST_PORTS:-13025 13143 13110}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mailedge-selftest.XXXXXX")
backend_pid=

cleanup() {
    trap - EXIT INT TERM
    if [ -n "$backend_pid" ]; then
        kill -TERM "$backend_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$backend_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$backend_pid" 2>/dev/null || true
        wait "$backend_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "selftest: FAIL: $*" >&2
    if [ -s "$tmp/backend.log" ]; then
        echo "selftest: last lines of the backend's log:" >&2
        tail -n 25 "$tmp/backend.log" >&2
    fi
    exit 1
}
ok() { echo "selftest: ok: $*"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for port in $smtp $imap $pop3; do
    port_open "$port" && fail "127.0.0.1:$port is already in use (set SELFTEST_PORTS)"
done

# A short idle timeout keeps a hung client from stalling the test for long.
"$python" demo/demo_backend.py --smtp "127.0.0.1:$smtp" --imap "127.0.0.1:$imap" \
    --pop3 "127.0.0.1:$pop3" --maildir "$tmp/mail" --timeout 20 2>"$tmp/backend.log" &
backend_pid=$!
for _ in $(seq 100); do         # at most 10 s
    kill -0 "$backend_pid" 2>/dev/null || fail "backend exited during start-up"
    port_open "$smtp" && port_open "$imap" && port_open "$pop3" && break
    sleep 0.1
done
port_open "$pop3" || fail "backend did not listen within 10 s"
ok "backend listening on 127.0.0.1:$smtp/$imap/$pop3"

# --- Python clients. The message exercises dot-stuffing (leading dots, a lone "."),
# 8-bit bytes, a line longer than RFC 5321's 1000 and an empty body line.
timeout 120 "$python" - "$smtp" "$imap" "$pop3" "$tmp" <<'EOF' || fail "Python client checks"
import imaplib, os, poplib, smtplib, socket, sys, threading
smtp, imap, pop3 = (int(p) for p in sys.argv[1:4])
tmp = sys.argv[4]
H, T = "127.0.0.1", 10

def check(cond, what):
    if not cond:
        sys.exit(f"selftest: FAIL: {what}")
    print(f"selftest: ok: {what}")

msg = (b"From: you@example.test\r\nTo: demo@example.test\r\nSubject: selftest\r\n"
       b"Message-ID: <selftest-1@example.test>\r\n\r\n"
       b"first line\r\n.leading dot\r\n..two dots\r\n.\r\n\r\n"
       b"caf\xc3\xa9 8-bit\r\n" + b"L" * 2000 + b"\r\nlast line\r\n")
open(os.path.join(tmp, "msg1.eml"), "wb").write(msg)

s = smtplib.SMTP(H, smtp, timeout=T)
code, ehlo = s.ehlo()
check(code == 250 and b"8BITMIME" in ehlo and b"SIZE" in ehlo, "SMTP EHLO")
check(s.sendmail("you@example.test", ["demo@example.test"], msg) == {}, "smtplib sendmail")
s.quit()
stored = open(os.path.join(tmp, "mail", "0000000001.eml"), "rb").read()
check(stored == msg, "stored message is byte-exact")

s = smtplib.SMTP(H, smtp, timeout=T)
try:
    s.login("demo", "wrong")
    check(False, "SMTP AUTH PLAIN refuses a wrong password")
except smtplib.SMTPAuthenticationError:
    check(True, "SMTP AUTH PLAIN refuses a wrong password")
s.login("demo", "demo")
s.quit()
check(True, "SMTP AUTH PLAIN accepts demo/demo")

m = imaplib.IMAP4(H, imap, timeout=T)
check("IMAP4REV1" in m.capabilities and "AUTH=PLAIN" in m.capabilities, "IMAP capabilities")
try:
    m.login("demo", "wrong")
    check(False, "IMAP LOGIN refuses a wrong password")
except imaplib.IMAP4.error:
    check(True, "IMAP LOGIN refuses a wrong password")
m.login("demo", "demo")
typ, data = m.select("INBOX")
check(typ == "OK" and data == [b"1"], "IMAP SELECT INBOX: 1 message")
typ, data = m.fetch("1", "(BODY.PEEK[] RFC822.SIZE FLAGS)")
check(data[0][1] == msg and b"RFC822.SIZE %d" % len(msg) in data[1] and b"\\Seen" not in data[1],
      "IMAP FETCH BODY.PEEK[] byte-exact, RFC822.SIZE, not \\Seen")
typ, data = m.fetch("1", "(RFC822)")
check(typ == "OK" and data[0][1] == msg, "IMAP FETCH RFC822 byte-exact")
typ, data = m.uid("FETCH", "1", "(BODY[])")
check(data[0][1] == msg and b"UID 1" in data[0][0], "IMAP UID FETCH BODY[] byte-exact")
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[]<0.4> FLAGS)")
check(data[0][1] == b"Subject: selftest\r\n\r\n" and data[1][1] == b"From"
      and b"\\Seen" in data[2], "IMAP HEADER.FIELDS, partial fetch, \\Seen set by RFC822")
check(m.search(None, "ALL") == ("OK", [b"1"]), "IMAP SEARCH ALL")
check(m.list()[1] == [b'(\\HasNoChildren) "/" INBOX'], 'IMAP LIST "" "*"')
m.logout()
m = imaplib.IMAP4(H, imap, timeout=T)
typ, _ = m.authenticate("PLAIN", lambda _: b"\0demo\0demo")
check(typ == "OK", "IMAP AUTHENTICATE PLAIN")
m.logout()

p = poplib.POP3(H, pop3, timeout=T)
try:
    p.user("demo"); p.pass_("wrong")
    check(False, "POP3 PASS refuses a wrong password")
except poplib.error_proto:
    check(True, "POP3 PASS refuses a wrong password")
p.user("demo"); p.pass_("demo")
check(p.stat() == (1, len(msg)), "POP3 STAT")
resp, lines, _ = p.retr(1)
check(b"\r\n".join(lines) + b"\r\n" == msg, "POP3 RETR byte-exact (dot-stuffing undone)")
check(p.top(1, 1)[1][-2:] == [b"", b"first line"], "POP3 TOP 1 1")
check(p.uidl(1).split()[1] == b"1", "POP3 UIDL")
p.quit()

# PIPELINING: every command in one write; the replies must come back in order.
c = socket.create_connection((H, smtp), timeout=T)
c.sendall(b"EHLO x\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n"
          b"Subject: pipelined\r\n\r\n..x\r\n.\r\nQUIT\r\n")
replies = b""
while chunk := c.recv(65536):
    replies += chunk
codes = [l[:3] for l in replies.split(b"\r\n") if l[3:4] == b" "]
check(codes == [b"220", b"250", b"250", b"250", b"354", b"250", b"221"], "SMTP PIPELINING")

# A message deleted over POP3 disappears from IMAP (EXPUNGE on NOOP).
m = imaplib.IMAP4(H, imap, timeout=T)
m.login("demo", "demo")
check(m.select()[1] == [b"2"], "IMAP sees the pipelined message")
p = poplib.POP3(H, pop3, timeout=T)
p.user("demo"); p.pass_("demo"); p.dele(2); p.quit()
m.noop()
check(m.response("EXPUNGE")[1] == [b"2"] and m.search(None, "ALL")[1] == [b"1"],
      "POP3 DELE + QUIT shows up as IMAP EXPUNGE")
m.logout()

# Junk must cost nothing but that one connection.
for port in (smtp, imap, pop3):
    for junk in (os.urandom(4000), b"\x16\x03\x01\x02\x00" + os.urandom(200),
                 b"A" * 200000 + b"\r\n", b"a LOGIN {5}\r\nde"):
        c = socket.create_connection((H, port), timeout=T)
        c.sendall(junk)
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
        c.close()
check(True, "junk, overlong lines, TLS hello, half literals on every port")

errors = []
def client(i):
    try:
        body = b"Subject: concurrent %d\r\n\r\nhello %d\r\n" % (i, i)
        s = smtplib.SMTP(H, smtp, timeout=30)
        s.sendmail("a@example.test", ["demo@example.test"], body)
        s.quit()
        m = imaplib.IMAP4(H, imap, timeout=30)
        m.login("demo", "demo")
        m.select(readonly=True)          # EXAMINE
        m.logout()
        p = poplib.POP3(H, pop3, timeout=30)
        p.user("demo"); p.pass_("demo"); p.stat(); p.quit()
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
for t in threads: t.start()
for t in threads: t.join()
check(not errors, f"50 concurrent SMTP+IMAP+POP3 clients {errors[:2]}")
EOF

# --- curl: fetch message 1 back, and send one.
curl_opts=(--silent --show-error --max-time 10 -u demo:demo)
curl "${curl_opts[@]}" "imap://127.0.0.1:$imap/INBOX;UID=1" -o "$tmp/curl-imap.eml" \
    || fail "curl imap:// UID=1"
cmp -s "$tmp/msg1.eml" "$tmp/curl-imap.eml" || fail "curl imap:// returned different bytes"
ok "curl imap://…/INBOX;UID=1 byte-exact"
curl "${curl_opts[@]}" "imap://127.0.0.1:$imap/INBOX/;MAILINDEX=1" -o "$tmp/curl-imap2.eml" \
    || fail "curl imap:// MAILINDEX=1"
cmp -s "$tmp/msg1.eml" "$tmp/curl-imap2.eml" || fail "curl imap:// MAILINDEX returned different bytes"
ok "curl imap://…/INBOX/;MAILINDEX=1 byte-exact"
curl "${curl_opts[@]}" "imap://127.0.0.1:$imap/INBOX?ALL" | grep -q '^\* SEARCH 1 ' \
    || fail "curl imap:// SEARCH ALL"
ok "curl imap://…/INBOX?ALL"
curl "${curl_opts[@]}" "pop3://127.0.0.1:$pop3/1" -o "$tmp/curl-pop3.eml" || fail "curl pop3:// /1"
cmp -s "$tmp/msg1.eml" "$tmp/curl-pop3.eml" || fail "curl pop3:// returned different bytes"
ok "curl pop3://…/1 byte-exact"

printf 'Subject: from curl\r\n\r\nHello.\r\n.dot\r\n' >"$tmp/curl-msg.txt"
curl --silent --show-error --max-time 10 "smtp://127.0.0.1:$smtp" --mail-from you@example.test \
    --mail-rcpt demo@example.test --upload-file "$tmp/curl-msg.txt" || fail "curl smtp:// upload"
stored=("$tmp"/mail/*.eml)        # NNNNNNNNNN.eml: the glob sorts them by UID
cmp -s "$tmp/curl-msg.txt" "${stored[-1]}" || fail "curl smtp:// message stored differently"
ok "curl smtp:// upload stored byte-exact"

if command -v swaks >/dev/null; then
    swaks --server "127.0.0.1:$smtp" --to demo@example.test --from you@example.test \
        --pipeline --auth PLAIN --auth-user demo --auth-password demo --timeout 10 \
        >"$tmp/swaks.out" 2>&1 || { cat "$tmp/swaks.out" >&2; fail "swaks"; }
    ok "swaks --pipeline --auth PLAIN"
else
    echo "selftest: skip: swaks not installed"
fi

kill -0 "$backend_pid" 2>/dev/null || fail "the backend died"
if grep -q 'internal error' "$tmp/backend.log"; then
    fail "the backend logged an internal error: $(grep -m1 'internal error' "$tmp/backend.log")"
fi
ok "backend still alive, no internal errors"
echo "selftest: PASS"
