#!/usr/bin/env bash
# What `make demo` runs once build/mailedge and the example certificates exist: start
# the demo mail backend (cleartext SMTP/IMAP/POP3 on 127.0.0.1:12025/12143/12110) and
# mailedge in front of it (implicit TLS on 127.0.0.1:10465/10993/10995, STARTTLS on
# 10587/10025/10143/10110, conf/demo.ini),
# print commands to try, then wait. Ctrl-C or SIGTERM stops both and removes the
# temporary mailbox. Both programs' logs follow on stderr; the commands go to stdout.
#
# usage: demo/run-demo.sh            (from any directory: it works from the repo root)
# env:   DEMO_EXIT_AFTER=N  stop by itself after N seconds (for tests). The exit status
#                           is then 0 if both programs were still running at the end.
#        MAILEDGE=PATH      the mailedge binary to run (default build/mailedge)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's interpreter, not whatever python3 is first on PATH: the backend needs nothing
# but the standard library, and the system one is always there.
python=/usr/bin/python3
mailedge=${MAILEDGE:-build/mailedge}
conf=conf/demo.ini
ca=certs-example/out/ca.crt
exit_after=${DEMO_EXIT_AFTER:-}
backend_ports=(12025 12143 12110)
edge_ports=(10465 10993 10995 10587 10025 10143 10110)

say() { printf 'run-demo: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$mailedge" ] || die "$mailedge not found: build it first ('make', or just 'make demo')"
[ -x "$python" ] || die "$python not found: apt-get install python3"
[[ "$exit_after" =~ ^[0-9]*$ ]] || die "DEMO_EXIT_AFTER must be a number of seconds"
[ -s "$ca" ] || certs-example/mkcerts.sh >&2

# Is something listening on 127.0.0.1:PORT? ss does not connect, so the check leaves
# no "client went away during the TLS handshake" lines in mailedge's log.
listening() {
    if command -v ss >/dev/null; then
        ss -Hltn "src 127.0.0.1:$1" | grep -q .
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

for port in "${backend_ports[@]}" "${edge_ports[@]}"; do
    listening "$port" && die "127.0.0.1:$port is already in use (is another demo running?)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mailedge-demo.XXXXXX")
backend_pid='' edge_pid='' tail_pid='' timer_pid=''

# shellcheck disable=SC2317  # (called by the EXIT trap)
cleanup() {
    trap - EXIT INT TERM
    local pid alive
    for pid in $edge_pid $backend_pid $timer_pid; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 120); do           # 12 s: mailedge drains sessions for up to 10 s
        alive=
        for pid in $edge_pid $backend_pid; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for pid in $edge_pid $backend_pid; do kill -KILL "$pid" 2>/dev/null || true; done
    if [ -n "$tail_pid" ]; then       # let the last log lines ("stopping") through
        sleep 0.3
        kill -TERM "$tail_pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'say "interrupted, stopping"; exit 130' INT
trap 'say "terminated, stopping"; exit 143' TERM

# wait_for_ports PID NAME LOG PORT...: bounded (10 s) wait until every port listens.
wait_for_ports() {
    local pid=$1 name=$2 log=$3 port ready
    shift 3
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited during start-up; its log:"
            cat "$log" >&2
            exit 1
        fi
        ready=1
        for port in "$@"; do listening "$port" || ready=; done
        [ -n "$ready" ] && return 0
        sleep 0.1
    done
    say "$name did not listen on ports $* within 10 s; its log:"
    cat "$log" >&2
    exit 1
}

"$python" demo/demo_backend.py --smtp "127.0.0.1:${backend_ports[0]}" \
    --imap "127.0.0.1:${backend_ports[1]}" --pop3 "127.0.0.1:${backend_ports[2]}" \
    --maildir "$tmp/mail" --user demo --password demo 2>"$tmp/backend.log" &
backend_pid=$!
wait_for_ports "$backend_pid" "demo backend" "$tmp/backend.log" "${backend_ports[@]}"

"$mailedge" -c "$conf" >"$tmp/mailedge.log" 2>&1 &
edge_pid=$!
wait_for_ports "$edge_pid" mailedge "$tmp/mailedge.log" "${edge_ports[@]}"

ca_opt="--cacert $ca"
cat <<EOF

mailedge demo is running. Run these from the repository root ($PWD).
User "demo", password "demo". Mail to any address lands in the one demo mailbox
(a temporary directory, removed when the demo stops).

Send a message (SMTPS, port 10465):
  swaks --server 127.0.0.1:10465 --tls-on-connect --tls-verify --tls-ca-path $ca --to demo@example.test --from you@example.test
  printf 'Subject: hello\\r\\n\\r\\nHello through mailedge.\\r\\n' > /tmp/msg.txt
  curl $ca_opt smtps://127.0.0.1:10465 --mail-from you@example.test --mail-rcpt demo@example.test --upload-file /tmp/msg.txt

Read it back (IMAPS 10993, POP3S 10995):
  curl $ca_opt -u demo:demo 'imaps://127.0.0.1:10993/INBOX?ALL'      # message numbers
  curl $ca_opt -u demo:demo 'imaps://127.0.0.1:10993/INBOX;UID=1'    # the first message
  curl $ca_opt -u demo:demo pop3s://127.0.0.1:10995/                  # list
  curl $ca_opt -u demo:demo pop3s://127.0.0.1:10995/1                 # the first message

By hand (the backend's greeting arrives through the TLS tunnel; -crlf: the protocols want CRLF):
  openssl s_client -connect 127.0.0.1:10993 -CAfile $ca -quiet -crlf
      a LOGIN demo demo / a SELECT INBOX / a FETCH 1 BODY[] / a LOGOUT
  openssl s_client -connect 127.0.0.1:10995 -CAfile $ca -quiet -crlf
      USER demo / PASS demo / LIST / RETR 1 / QUIT
  openssl s_client -connect 127.0.0.1:10465 -CAfile $ca -quiet -crlf
      EHLO me / MAIL FROM:<you@example.test> / RCPT TO:<demo@example.test> / DATA / Subject: hi / (empty line) / text / . / QUIT

STARTTLS (mailedge answers the plaintext part itself; try MAIL FROM before STARTTLS on 10587):
  openssl s_client -starttls smtp -connect 127.0.0.1:10587 -CAfile $ca -quiet -crlf
  openssl s_client -starttls imap -connect 127.0.0.1:10143 -CAfile $ca -quiet -crlf
  openssl s_client -starttls pop3 -connect 127.0.0.1:10110 -CAfile $ca -quiet -crlf
  swaks --server 127.0.0.1:10587 --tls --tls-verify --tls-ca-path $ca --to demo@example.test --from you@example.test
  swaks --server 127.0.0.1:10025 --to demo@example.test --from you@example.test   # plaintext on the "may" MX port
  curl $ca_opt --ssl-reqd -u demo:demo 'imap://127.0.0.1:10143/INBOX;UID=1'
  curl $ca_opt --ssl-reqd -u demo:demo pop3://127.0.0.1:10110/1

From Python:
  $python -c 'import ssl,smtplib; c=ssl.create_default_context(cafile="$ca"); s=smtplib.SMTP_SSL("127.0.0.1",10465,context=c); s.sendmail("you@example.test",["demo@example.test"],"Subject: hi from Python\\r\\n\\r\\nHello.\\r\\n"); s.quit()'
  $python -c 'import ssl,imaplib; c=ssl.create_default_context(cafile="$ca"); m=imaplib.IMAP4_SSL("127.0.0.1",10993,ssl_context=c); m.login("demo","demo"); m.select(); print(m.fetch("1","(RFC822)")[1][0][1].decode())'
  $python -c 'import ssl,poplib; c=ssl.create_default_context(cafile="$ca"); p=poplib.POP3_SSL("127.0.0.1",10995,context=c); p.user("demo"); p.pass_("demo"); print(b"\\n".join(p.retr(1)[1]).decode())'

EOF
if [ -n "$exit_after" ]; then
    echo "Stopping by itself after $exit_after s (DEMO_EXIT_AFTER)."
else
    echo "Ctrl-C stops the demo. Logs follow."
fi

tail -q -n +1 -f "$tmp/backend.log" "$tmp/mailedge.log" >&2 &
tail_pid=$!

if [ -n "$exit_after" ]; then
    sleep "$exit_after" &
    timer_pid=$!
fi
# Returns when either program exits or the timer runs out; a signal interrupts it and
# runs the trap.
status=0
wait -n -p finished $backend_pid $edge_pid $timer_pid || status=$?
if [ -n "$timer_pid" ] && [ "${finished:-}" = "$timer_pid" ]; then
    say "DEMO_EXIT_AFTER=$exit_after elapsed, stopping"
    exit 0
fi
[ "${finished:-}" = "$edge_pid" ] && name=mailedge || name="demo backend"
say "$name exited unexpectedly (status $status), stopping"
exit 1
