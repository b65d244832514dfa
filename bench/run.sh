#!/usr/bin/env bash
# `make bench`: mailedge against haproxy, hitch, stunnel4 and nginx on this machine.
#
# One server at a time, on the same certificate (an RSA-2048 pass, then an ECDSA P-256
# pass), the same TLS settings (TLS 1.3 TLS_AES_128_GCM_SHA256 with X25519; TLS 1.2
# ECDHE-*-AES128-GCM-SHA256 only for the TLS 1.2 resumption row), the same sinks behind
# it. The server is pinned to CPU 0; bench/loadgen and bench/sink run on CPU 1. Each
# figure is measured BENCH_RUNS times (min/median/max). Peers run from their binaries
# in the foreground with configs, pid and log files in a private temp dir on loopback
# ports, never as system services, and are stopped by PID after their rows.
#
# Writes bench/results/{results.md,results.csv,*.png,logs/}. See bench/README.md.
#
# Environment (all optional):
#   BENCH_QUICK=1          smoke mode, ~3-4 minutes: 1 s per run (default: full, <= 20 min)
#   BENCH_RUNS=N           runs per figure (default 3)
#   BENCH_SECONDS=S        seconds per run (default 4; quick 1)
#   BENCH_CONC=C           concurrency of the rate rows (default 16)
#   BENCH_IDLE_SIZES="1000 10000 50000"  idle-session counts for the RSS rows (default
#                          "1000 10000 50000"; quick "1000"). Bounded by RLIMIT_NOFILE: 2
#                          descriptors per session in the server. The first size that does not
#                          fit is measured at the largest count that does (e.g. 10000 -> 9900
#                          under a hard limit of 20000); larger ones are reported as not
#                          measured, with the limit.
#   BENCH_SERVERS="mailedge haproxy hitch stunnel nginx"   which servers, in this order
#   BENCH_ROWS_RSA / BENCH_ROWS_ECDSA   rows of each certificate pass (see ALL_ROWS below)
#   BENCH_PORT_BASE=28000  first of the loopback ports used (base+1 .. base+16)
#   BENCH_BUDGET=S         stop measuring (rows then say so) after S seconds (default
#                          1140 full, 300 quick) so that `make bench` stays bounded
#   BENCH_SINK / BENCH_LOADGEN   other binaries than build/bench/{sink,loadgen}
#   BENCH_KEEP_TMP=1       keep the temp dir (rendered configs, logs) for debugging
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 1

QUICK=${BENCH_QUICK:-0}
RUNS=${BENCH_RUNS:-3}
if [ "$QUICK" = 1 ]; then
    DUR=${BENCH_SECONDS:-1}
    BUDGET=${BENCH_BUDGET:-300}
else
    DUR=${BENCH_SECONDS:-4}
    BUDGET=${BENCH_BUDGET:-1140}
fi
CONC=${BENCH_CONC:-16}
if [ "$QUICK" = 1 ]; then
    IDLE_SIZES=${BENCH_IDLE_SIZES:-1000}
else
    IDLE_SIZES=${BENCH_IDLE_SIZES:-1000 10000 50000}
fi
SERVERS=${BENCH_SERVERS:-mailedge haproxy hitch stunnel nginx}
ALL_ROWS="handshake latency starttls-smtp starttls-imap starttls-pop3 resume13 resume12
          bulk-up-1 bulk-up-16 bulk-down-1 bulk-down-16 idle"
ROWS_RSA=${BENCH_ROWS_RSA-handshake}
ROWS_ECDSA=${BENCH_ROWS_ECDSA-$ALL_ROWS}
PB=${BENCH_PORT_BASE:-28000}
SINK=${BENCH_SINK:-$root/build/bench/sink}
LOADGEN=${BENCH_LOADGEN:-$root/build/bench/loadgen}
MAILEDGE=$root/build/mailedge
CERTS=$root/certs-example/out
OUT=$root/bench/results

# Ports: sinks, then the server's listeners (the same for every server).
S_SMTP=$((PB + 1)) S_IMAP=$((PB + 2)) S_POP3=$((PB + 3)) S_DISCARD=$((PB + 4))
S_SOURCE=$((PB + 5))
P_TLS=$((PB + 10)) P_UP=$((PB + 11)) P_DOWN=$((PB + 12))
P_SSMTP=$((PB + 13)) P_SIMAP=$((PB + 14)) P_SPOP3=$((PB + 15)) P_AUTH=$((PB + 16))

CIPHERS12=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
SUITES13=TLS_AES_128_GCM_SHA256
TLS_GROUPS=X25519
SRC_ADDRS=127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5

T0=$(date +%s)
CLK_TCK=$(getconf CLK_TCK)

# One bench at a time on this machine: two would share ports, CPUs and bench/results.
LOCK=/tmp/mailedge-bench.lock
exec 9>>"$LOCK"
if ! flock -n 9; then
    echo "bench: another bench run holds $LOCK ($(cat "$LOCK" 2>/dev/null)); not starting" >&2
    exit 1
fi
echo "pid $$ in $root since $(date '+%H:%M:%S')" >"$LOCK"

log() { printf '[bench %4ds] %s\n' $(($(date +%s) - T0)) "$*" >&2; }
elapsed() { echo $(($(date +%s) - T0)); }

# ---------------------------------------------------------------- limits ---
# Every server, the sink and the loadgen inherit the hard descriptor limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
# Two descriptors per relayed session (client + backend) plus listeners and slack.
MAXCONN=$(((NOFILE - 200) / 2))
# The first idle size over the descriptor limit is measured at the largest count that fits
# (rounded down to 100), so the table still has a figure near it; the rest stay as given
# and are reported as not measured.
fit_idle_sizes() {
    local n out="" fitted=0 top=$((MAXCONN / 100 * 100)) largest=0
    for n in $IDLE_SIZES; do
        if [ "$n" -le "$MAXCONN" ]; then
            out="$out $n"
            [ "$n" -gt "$largest" ] && largest=$n
        elif [ $fitted = 0 ] && [ "$top" -gt "$largest" ]; then
            out="$out $top"
            fitted=1
            echo "bench: $n idle sessions need $((2 * n + 200)) descriptors per server, RLIMIT_NOFILE allows $NOFILE: measuring $top instead" >&2
        else
            out="$out $n"
        fi
    done
    echo "${out# }"
}
IDLE_SIZES=$(fit_idle_sizes)

TMP=$(mktemp -d /tmp/mailedge-bench.XXXXXX)
mkdir -p "$OUT"
rm -f "$OUT"/*.png "$OUT"/results.md "$OUT"/results.csv "$OUT"/tls.txt "$OUT"/env.txt
rm -rf "$OUT/logs"
mkdir -p "$OUT/logs"
CSV=$OUT/results.csv
echo "server,cert,row,run,status,ok,errors,seconds,rate,p50_ms,p99_ms,cpu_us_per_op,mbps,rss_kb_per_session,resumed,server_cpu_s,cpu0_other_pct,note" >"$CSV"

# ------------------------------------------------------- process control ---
STARTED=()      # every PID this script started (servers and sink), for the final sweep
SERVER_TOP=()   # top-level PIDs of the server under test
SERVER_PORTS=() # its listening ports
SERVER_WHY=""   # why it failed to start

descendants() { # PID... -> the PIDs and all their descendants
    local p c
    for p in "$@"; do
        [ -d "/proc/$p" ] || continue
        echo "$p"
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do descendants "$c"; done
    done
}

alive() { # PID... -> true if all are alive
    local p
    for p in "$@"; do kill -0 "$p" 2>/dev/null || return 1; done
}

stop_pids() { # PID...: TERM, wait up to 5 s, then KILL what is left (descendants included)
    local all p
    all=$(descendants "$@")
    [ -n "$all" ] || return 0
    # shellcheck disable=SC2086
    kill -TERM $all 2>/dev/null
    for _ in $(seq 50); do
        local left=""
        for p in $all; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
        [ -z "$left" ] && break
        sleep 0.1
    done
    for p in $all; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null; done
    for p in "$@"; do wait "$p" 2>/dev/null; done
    return 0
}

cleanup() {
    local rc=$?
    [ ${#STARTED[@]} -gt 0 ] && stop_pids "${STARTED[@]}"
    cp "$TMP"/*.log "$OUT/logs/" 2>/dev/null
    [ "${BENCH_KEEP_TMP:-0}" = 1 ] || rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

listening() { # PORT -> true if something listens on 127.0.0.1:PORT
    [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

wait_ports() { # TIMEOUT_S PID... -- PORT...: true when all ports listen, false if a PID dies
    local deadline=$(($(date +%s) + $1)) pids=() ports=() p ok
    shift
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do pids+=("$1"); shift; done
    shift
    ports=("$@")
    while :; do
        alive "${pids[@]}" || return 1
        ok=1
        for p in "${ports[@]}"; do listening "$p" || { ok=0; break; }; done
        [ $ok = 1 ] && return 0
        [ "$(date +%s)" -ge "$deadline" ] && return 2
        sleep 0.1
    done
}

render() { # TEMPLATE OUTPUT [extra sed expressions...]
    local in=$1 outf=$2
    shift 2
    sed -e "s|@TMP@|$TMP|g" -e "s|@CERT@|$CERT_FILE|g" -e "s|@KEY@|$KEY_FILE|g" \
        -e "s|@PEM@|$PEM_FILE|g" -e "s|@CIPHERS12@|$CIPHERS12|g" \
        -e "s|@SUITES13@|$SUITES13|g" -e "s|@GROUPS@|$TLS_GROUPS|g" \
        -e "s|@MAXCONN@|$MAXCONN|g" -e "s|@NOFILE@|$NOFILE|g" \
        -e "s|@WORKER_CONNS@|$((NOFILE - 100))|g" \
        -e "s|@S_SMTP@|$S_SMTP|g" -e "s|@S_IMAP@|$S_IMAP|g" -e "s|@S_POP3@|$S_POP3|g" \
        -e "s|@S_DISCARD@|$S_DISCARD|g" -e "s|@S_SOURCE@|$S_SOURCE|g" \
        -e "s|@P_TLS@|$P_TLS|g" -e "s|@P_UP@|$P_UP|g" -e "s|@P_DOWN@|$P_DOWN|g" \
        -e "s|@P_SSMTP@|$P_SSMTP|g" -e "s|@P_SIMAP@|$P_SIMAP|g" \
        -e "s|@P_SPOP3@|$P_SPOP3|g" -e "s|@P_AUTH@|$P_AUTH|g" \
        "$@" "$in" >"$outf"
}

last_line() { # FILE -> its first error line (else its last line), made CSV-safe
    local l
    l=$(grep -m1 -iE 'error|alert|emerg|fatal|fail|cannot|unable|invalid|unknown' "$1" 2>/dev/null)
    [ -n "$l" ] || l=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1)
    printf '%s' "$l" | tr ',"' ';'"'" | cut -c1-240
}

# --------------------------------------------------------------- servers ---
# start_NAME: start the server in the background pinned to CPU 0; set SERVER_TOP and
# SERVER_PORTS, or return non-zero with SERVER_WHY set.

launch() { # LOGFILE CMD...: start pinned to CPU 0, record its PID
    local logf=$1
    shift
    taskset -c 0 "$@" >>"$logf" 2>&1 </dev/null &
    local pid=$!
    STARTED+=("$pid")
    SERVER_TOP+=("$pid")
}

need() { # BINARY: true if installed, else SERVER_WHY
    command -v "$1" >/dev/null 2>&1 && return 0
    SERVER_WHY="$1 not installed (run bench/install-deps.sh)"
    return 1
}

start_mailedge() {
    [ -x "$MAILEDGE" ] || { SERVER_WHY="$MAILEDGE missing (make all)"; return 1; }
    render bench/peers/mailedge.ini "$TMP/mailedge.ini"
    if ! "$MAILEDGE" -t -c "$TMP/mailedge.ini" >"$TMP/mailedge-check.log" 2>&1; then
        SERVER_WHY="config check: $(last_line "$TMP/mailedge-check.log")"
        return 1
    fi
    SERVER_PORTS=("$P_TLS" "$P_UP" "$P_DOWN" "$P_SSMTP" "$P_SIMAP" "$P_SPOP3")
    launch "$TMP/mailedge.log" "$MAILEDGE" -c "$TMP/mailedge.ini"
}

start_haproxy() {
    need haproxy || return 1
    render bench/peers/haproxy.cfg "$TMP/haproxy.cfg"
    if ! haproxy -c -q -f "$TMP/haproxy.cfg" >"$TMP/haproxy-check.log" 2>&1; then
        SERVER_WHY="config check: $(last_line "$TMP/haproxy-check.log")"
        return 1
    fi
    SERVER_PORTS=("$P_TLS" "$P_UP" "$P_DOWN")
    launch "$TMP/haproxy.log" haproxy -db -f "$TMP/haproxy.cfg"
}

start_hitch() {
    need hitch || return 1
    local name front back
    SERVER_PORTS=()
    # One instance per backend: hitch has a single backend per process.
    for spec in "smtp:$P_TLS:$S_SMTP" "up:$P_UP:$S_DISCARD" "down:$P_DOWN:$S_SOURCE"; do
        IFS=: read -r name front back <<<"$spec"
        render bench/peers/hitch.conf "$TMP/hitch-$name.conf" \
            -e "s|@P_FRONT@|$front|g" -e "s|@S_BACK@|$back|g"
        if ! hitch --test --config="$TMP/hitch-$name.conf" >"$TMP/hitch-check.log" 2>&1; then
            SERVER_WHY="config check: $(last_line "$TMP/hitch-check.log")"
            return 1
        fi
        SERVER_PORTS+=("$front")
        launch "$TMP/hitch-$name.log" hitch --config="$TMP/hitch-$name.conf"
    done
}

start_stunnel() {
    need stunnel4 || need stunnel || return 1
    local bin
    bin=$(command -v stunnel4 || command -v stunnel)
    render bench/peers/stunnel.conf "$TMP/stunnel.conf"
    SERVER_PORTS=("$P_TLS" "$P_UP" "$P_DOWN" "$P_SSMTP" "$P_SIMAP" "$P_SPOP3")
    launch "$TMP/stunnel-stderr.log" "$bin" "$TMP/stunnel.conf"
}

start_nginx() {
    need nginx || return 1
    local m
    for m in ngx_mail_module ngx_stream_module; do
        [ -f /usr/lib/nginx/modules/$m.so ] || {
            SERVER_WHY="/usr/lib/nginx/modules/$m.so missing (libnginx-mod-mail/-stream; bench/install-deps.sh)"
            return 1
        }
    done
    render bench/peers/nginx.conf "$TMP/nginx.conf"
    if ! nginx -t -q -p "$TMP/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf" \
        >"$TMP/nginx-check.log" 2>&1; then
        SERVER_WHY="config check: $(last_line "$TMP/nginx-check.log")"
        return 1
    fi
    SERVER_PORTS=("$P_TLS" "$P_UP" "$P_DOWN" "$P_SSMTP" "$P_SIMAP" "$P_SPOP3" "$P_AUTH")
    launch "$TMP/nginx.log" nginx -p "$TMP/" -e "$TMP/nginx-error.log" -c "$TMP/nginx.conf"
}

server_logs() { # the server's log files, newest content last
    case $1 in
    mailedge) echo "$TMP/mailedge.log" ;;
    haproxy) echo "$TMP/haproxy.log" ;;
    hitch) echo "$TMP/hitch-smtp.log $TMP/hitch-up.log $TMP/hitch-down.log" ;;
    stunnel) echo "$TMP/stunnel-stderr.log $TMP/stunnel.log" ;;
    nginx) echo "$TMP/nginx.log $TMP/nginx-error.log" ;;
    esac
}

start_server() { # NAME: start and wait until all its ports listen (10 s)
    local name=$1 p f why
    SERVER_TOP=() SERVER_PORTS=() SERVER_WHY=""
    for p in $P_TLS $P_UP $P_DOWN $P_SSMTP $P_SIMAP $P_SPOP3 $P_AUTH; do
        if listening "$p"; then
            SERVER_WHY="port $p already in use ($(ss -Hltnp "sport = :$p" | grep -o 'users:(("[^"]*' | cut -d'"' -f2 | head -1))"
            return 1
        fi
    done
    "start_$name" || return 1
    wait_ports 10 "${SERVER_TOP[@]}" -- "${SERVER_PORTS[@]}"
    case $? in
    0) return 0 ;;
    1) why="exited" ;;
    *) why="ports not listening after 10 s" ;;
    esac
    sleep 0.2
    for f in $(server_logs "$name"); do
        [ -s "$f" ] && why="$why: $(last_line "$f")"
    done
    SERVER_WHY=$why
    stop_pids "${SERVER_TOP[@]}"
    SERVER_TOP=()
    return 1
}

stop_server() {
    [ ${#SERVER_TOP[@]} -gt 0 ] && stop_pids "${SERVER_TOP[@]}"
    SERVER_TOP=()
}

server_pids() { descendants "${SERVER_TOP[@]}" | paste -sd, -; }

cpu0_busy() { # ticks CPU 0 ran tasks (user, nice, system) or was stolen by the hypervisor
    # irq/softirq are left out: loopback packet processing for the server's own traffic is
    # accounted there and is not disturbance from other work.
    awk '$1 == "cpu0" { print $2 + $3 + $4 + $9; exit }' /proc/stat
}

cpu_ticks() { # comma-separated PIDs -> utime+stime summed (clock ticks)
    local p sum=0 st rest
    for p in ${1//,/ }; do
        st=$(cat /proc/"$p"/stat 2>/dev/null) || continue
        rest=${st##*) }
        # shellcheck disable=SC2086
        set -- $rest
        sum=$((sum + ${12} + ${13}))
    done
    echo $sum
}

# ------------------------------------------------------------------ rows ---
supports() { # SERVER ROW -> true if the server can do the row, else prints why not
    case $2 in
    starttls-*)
        case $1 in
        haproxy) echo "n/a: haproxy has no STARTTLS"; return 1 ;;
        hitch) echo "n/a: hitch has no STARTTLS"; return 1 ;;
        esac
        ;;
    esac
    return 0
}

# loadgen arguments for a row (without --pids)
row_args() { # ROW [IDLE_SIZE]
    local ca="--ca $CERTS/ca.crt"
    case $1 in
    handshake) echo "handshake --connect 127.0.0.1:$P_TLS -c $CONC -t $DUR --tls13 $ca" ;;
    latency) echo "handshake --connect 127.0.0.1:$P_TLS -c 1 -t $DUR --tls13 $ca" ;;
    starttls-smtp) echo "starttls-smtp --connect 127.0.0.1:$P_SSMTP -c $CONC -t $DUR --tls13 $ca" ;;
    starttls-imap) echo "starttls-imap --connect 127.0.0.1:$P_SIMAP -c $CONC -t $DUR --tls13 $ca" ;;
    starttls-pop3) echo "starttls-pop3 --connect 127.0.0.1:$P_SPOP3 -c $CONC -t $DUR --tls13 $ca" ;;
    resume13) echo "resume13 --connect 127.0.0.1:$P_TLS -c $CONC -t $DUR --tls13 $ca" ;;
    resume12) echo "resume12 --connect 127.0.0.1:$P_TLS -c $CONC -t $DUR --tls12 $ca" ;;
    bulk-up-*) echo "bulk-up --connect 127.0.0.1:$P_UP --streams ${1##*-} -t $DUR --tls13 $ca" ;;
    bulk-down-*) echo "bulk-down --connect 127.0.0.1:$P_DOWN --streams ${1##*-} -t $DUR --tls13 $ca" ;;
    idle) echo "idle --connect 127.0.0.1:$P_TLS --hold $2 -c $CONC --src $SRC_ADDRS -t $(idle_secs "$2") --tls13 $ca" ;;
    esac
}

idle_secs() { # bound for an idle run: time to open N sessions at >= 100/s, plus 5 s
    local s=$(($1 / 100 + 5))
    echo $s
}

csv_row() { # server cert row run status note [RESULT fields...]
    local server=$1 cert=$2 row=$3 run=$4 status=$5 note=$6
    shift 6
    local ok=0 errors=0 seconds=0 rate=0 p50=0 p99=0 cpu=0 mbps=0 rss=0 resumed=0 scpu=0 other=0 kv
    for kv in "$@"; do
        case $kv in
        ok=*) ok=${kv#*=} ;;
        errors=*) errors=${kv#*=} ;;
        seconds=*) seconds=${kv#*=} ;;
        rate=*) rate=${kv#*=} ;;
        p50_ms=*) p50=${kv#*=} ;;
        p99_ms=*) p99=${kv#*=} ;;
        server_cpu_us_per_op=*) cpu=${kv#*=} ;;
        mbps=*) mbps=${kv#*=} ;;
        rss_kb_per_session=*) rss=${kv#*=} ;;
        resumed=*) resumed=${kv#*=} ;;
        server_cpu_s=*) scpu=${kv#*=} ;;
        cpu0_other_pct=*) other=${kv#*=} ;;
        esac
    done
    note=$(printf '%s' "$note" | tr ',"\n' ";' ")
    echo "$server,$cert,$row,$run,$status,$ok,$errors,$seconds,$rate,$p50,$p99,$cpu,$mbps,$rss,$resumed,$scpu,$other,$note" >>"$CSV"
}

mark_row() { # server cert row status note: every run of a row that was not measured
    local r
    for r in $(seq "$RUNS"); do csv_row "$1" "$2" "$3" "$r" "$4" "$5"; done
}

run_loadgen() { # SERVER CERT ROWLABEL RUN ARGS... : one measured run -> one CSV line
    local server=$1 cert=$2 row=$3 run=$4
    shift 4
    local pids t0 t1 rc res out=$TMP/loadgen.out err=$TMP/loadgen.err bound
    pids=$(server_pids)
    # Bound: the run's own -t plus slack for connection set-up and teardown.
    bound=$(echo "$*" | awk '{ for (i = 1; i < NF; i++) if ($i == "-t") t = $(i + 1) }
                              END { printf "%d", t + 30.5 }')
    local c0 c1 w0 w1
    t0=$(cpu_ticks "$pids") c0=$(cpu0_busy) w0=$(date +%s%N)
    (timeout -k 5 "$bound" taskset -c 1 "$LOADGEN" "$@" --pids "$pids" >"$out" 2>"$err") 2>/dev/null
    rc=$?
    t1=$(cpu_ticks "$pids") c1=$(cpu0_busy) w1=$(date +%s%N)
    { echo "== $server $cert $row #$run: $LOADGEN $*"; cat "$err"; } >>"$TMP/loadgen.log"
    res=$(grep -m1 '^RESULT ' "$out")
    local scpu other
    scpu=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / hz }')
    # CPU 0 is the server's: time it spent on anything else (other work on this machine)
    # makes the run's figures less trustworthy, and the report says so.
    other=$(awk -v a="$c0" -v b="$c1" -v s="$scpu" -v hz="$CLK_TCK" -v w0="$w0" -v w1="$w1" \
        'BEGIN { o = ((b - a) / hz - s) / ((w1 - w0) / 1e9) * 100; if (o < 0) o = 0; printf "%.0f", o }')
    if [ -z "$res" ]; then
        local why="loadgen exit $rc"
        if [ $rc = 124 ] || [ $rc = 137 ]; then
            why="timed out after ${bound}s"
        elif [ $rc -gt 128 ]; then
            why="loadgen killed by SIG$(kill -l $((rc - 128)) 2>/dev/null)"
        fi
        why="$why: $(last_line "$err")"
        alive "${SERVER_TOP[@]}" || why="server died: $why"
        csv_row "$server" "$cert" "$row" "$run" error "$why"
        log "  $server $cert $row #$run: $why"
        return 1
    fi
    local note=""
    alive "${SERVER_TOP[@]}" || note="server died during the run"
    # shellcheck disable=SC2086
    csv_row "$server" "$cert" "$row" "$run" ok "$note" ${res#RESULT } "server_cpu_s=$scpu" \
        "cpu0_other_pct=$other"
    log "  $server $cert $row #$run: ${res#RESULT }"
    return 0
}

# What a server actually negotiates, checked with openssl s_client once per server and
# certificate (TLS 1.3 and 1.2): the report shows it next to the figures, so that equal
# settings are a fact, not an assumption.
tls_check() { # SERVER CERT
    local v out line port st
    for v in 1_3 1_2 starttls; do
        port=$P_TLS st=""
        if [ $v = starttls ]; then
            supports "$1" starttls-smtp >/dev/null || continue
            port=$P_SSMTP st="-starttls smtp"
        fi
        # shellcheck disable=SC2086
        out=$(echo | timeout 5 taskset -c 1 openssl s_client -connect "127.0.0.1:$port" \
            $st -tls${v/starttls/1_3} -brief -CAfile "$CERTS/ca.crt" 2>&1)
        line=$(printf '%s\n' "$out" | awk -F': ' '
            /^Protocol version/ { p = $2 } /^Ciphersuite/ { c = $2 }
            /^Signature type/ { s = $2 } /^Server Temp Key/ { split($2, k, ","); g = k[1] }
            /^Verification/ { vf = $2 }
            END { printf "%s %s %s %s verify=%s", p, c, g, s, vf }')
        [ -n "${line// /}" ] || line="handshake failed: $(printf '%s\n' "$out" | grep -m1 -i error | cut -c1-120)"
        echo "$1,$2,tls$v,$line" >>"$OUT/tls.txt"
    done
}

over_budget() { [ "$(elapsed)" -ge "$BUDGET" ]; }

measure_server() { # SERVER CERT ROWS... (rows other than idle): one server start for all
    local server=$1 cert=$2 row why r
    shift 2
    [ $# -gt 0 ] || return 0
    if over_budget; then
        for row in "$@"; do mark_row "$server" "$cert" "$row" skipped "not measured: time budget (${BUDGET}s) used up"; done
        return 0
    fi
    if ! start_server "$server"; then
        log "$server ($cert): failed to start: $SERVER_WHY"
        for row in "$@"; do mark_row "$server" "$cert" "$row" failed "failed to start: $SERVER_WHY"; done
        return 0
    fi
    log "$server ($cert) started: pids $(server_pids)"
    tls_check "$server" "$cert"
    for row in "$@"; do
        if ! why=$(supports "$server" "$row"); then
            mark_row "$server" "$cert" "$row" n/a "${why#n/a: }"
            continue
        fi
        for r in $(seq "$RUNS"); do
            if over_budget; then
                csv_row "$server" "$cert" "$row" "$r" skipped "not measured: time budget (${BUDGET}s) used up"
                continue
            fi
            if ! alive "${SERVER_TOP[@]}"; then
                log "$server died; restarting it"
                stop_server
                if ! start_server "$server"; then
                    csv_row "$server" "$cert" "$row" "$r" failed "restart after a crash failed: $SERVER_WHY"
                    continue
                fi
            fi
            # shellcheck disable=SC2046
            run_loadgen "$server" "$cert" "$row" "$r" $(row_args "$row")
        done
    done
    stop_server
}

# Idle sessions: a fresh server for every run, so that memory freed by earlier rows and
# runs (kept by the allocator) does not hide what new sessions cost.
measure_idle() { # SERVER CERT N
    local server=$1 cert=$2 n=$3 row="idle-$3" r
    if [ "$n" -gt "$MAXCONN" ]; then
        mark_row "$server" "$cert" "$row" skipped "not measured: RLIMIT_NOFILE hard limit $NOFILE allows ~$MAXCONN sessions per server process (2 descriptors each)"
        return 0
    fi
    for r in $(seq "$RUNS"); do
        if over_budget; then
            csv_row "$server" "$cert" "$row" "$r" skipped "not measured: time budget (${BUDGET}s) used up"
            continue
        fi
        if ! start_server "$server"; then
            log "$server ($cert): failed to start: $SERVER_WHY"
            csv_row "$server" "$cert" "$row" "$r" failed "failed to start: $SERVER_WHY"
            continue
        fi
        sleep 0.3 # let start-up allocations (probes, worker forks) settle
        # shellcheck disable=SC2046
        run_loadgen "$server" "$cert" "$row" "$r" $(row_args idle "$n")
        stop_server
        # A server that could not hold n sessions spends the whole bound of every run
        # retrying: one such run says it, and the budget is kept for the others.
        local held
        held=$(grep -m1 '^RESULT ' "$TMP/loadgen.out" 2>/dev/null | grep -o ' ok=[0-9]*' | cut -d= -f2)
        if [ -n "$held" ] && [ "$held" -lt "$n" ] && [ "$r" -lt "$RUNS" ]; then
            local rr
            for rr in $(seq $((r + 1)) "$RUNS"); do
                csv_row "$server" "$cert" "$row" "$rr" skipped "not repeated: run $r held only $held of $n sessions"
            done
            log "  $server $cert $row: held only $held of $n sessions; not repeated"
            break
        fi
    done
}

# ---------------------------------------------------------------- sinks ---
SINK_PID=""
start_sinks() {
    local p
    for p in $S_SMTP $S_IMAP $S_POP3 $S_DISCARD $S_SOURCE; do
        listening "$p" && { log "sink port $p already in use"; return 1; }
    done
    taskset -c 1 "$SINK" --listen "127.0.0.1:$S_SMTP=smtp" --listen "127.0.0.1:$S_IMAP=imap" \
        --listen "127.0.0.1:$S_POP3=pop3" --listen "127.0.0.1:$S_DISCARD=discard" \
        --listen "127.0.0.1:$S_SOURCE=source" >>"$TMP/sink.log" 2>&1 </dev/null &
    SINK_PID=$!
    STARTED+=("$SINK_PID")
    wait_ports 10 "$SINK_PID" -- $S_SMTP $S_IMAP $S_POP3 $S_DISCARD $S_SOURCE
}

# ------------------------------------------------------------------ main ---
for b in "$SINK" "$LOADGEN"; do
    [ -x "$b" ] || { echo "bench: $b missing (make bench builds it)" >&2; exit 1; }
done
for f in ca.crt server-rsa.crt server-rsa.key server-ecdsa.crt server-ecdsa.key; do
    [ -s "$CERTS/$f" ] || { echo "bench: $CERTS/$f missing (make certs)" >&2; exit 1; }
done
for t in taskset timeout ss awk python3; do
    command -v $t >/dev/null || { echo "bench: $t missing (bench/install-deps.sh)" >&2; exit 1; }
done

mode="full"
[ "$QUICK" = 1 ] && mode="quick"
log "$mode run: $RUNS runs x ${DUR}s, concurrency $CONC, idle sizes '$IDLE_SIZES', budget ${BUDGET}s, ports $PB-$((PB + 16)), nofile $NOFILE, temp $TMP"

# What the run was, for the report's header.
{
    echo "mode=$mode"
    echo "runs=$RUNS"
    echo "seconds=$DUR"
    echo "concurrency=$CONC"
    echo "idle_sizes=$IDLE_SIZES"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "git=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
    echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo) x $(nproc)"
    echo "kernel=$(uname -r)"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "nofile=$NOFILE"
    echo "mailedge=$("$MAILEDGE" -V 2>/dev/null | tr '\n' ' ')"
    echo "haproxy=$(haproxy -v 2>/dev/null | head -1)"
    echo "hitch=$(hitch --version 2>&1 | head -1)"
    echo "stunnel=$( (stunnel4 -version 2>&1 || stunnel -version 2>&1) | grep -m1 '^stunnel')"
    echo "nginx=$(nginx -v 2>&1)"
    echo "openssl=$(openssl version)"
} >"$OUT/env.txt"

# Run copies of the binaries: a rebuild during the run (make in another shell) must not
# swap them under it.
mkdir -p "$TMP/bin"
cp "$SINK" "$TMP/bin/sink" && cp "$LOADGEN" "$TMP/bin/loadgen" || {
    echo "bench: cannot copy the binaries to $TMP/bin" >&2
    exit 1
}
SINK=$TMP/bin/sink LOADGEN=$TMP/bin/loadgen
# A missing mailedge is reported in its rows ("failed to start"), like any server.
[ -x "$MAILEDGE" ] && cp "$MAILEDGE" "$TMP/bin/mailedge" && MAILEDGE=$TMP/bin/mailedge

if ! start_sinks; then
    echo "bench: the sink did not start: $(last_line "$TMP/sink.log")" >&2
    exit 1
fi
log "sink started: pid $SINK_PID"

use_cert() { # rsa|ecdsa: the certificate every server is given
    CERT_FILE=$CERTS/server-$1.crt
    KEY_FILE=$CERTS/server-$1.key
    PEM_FILE=$TMP/server-$1.pem
    (umask 077 && cat "$CERT_FILE" "$KEY_FILE" >"$PEM_FILE")
}

sink_ok() { alive "$SINK_PID" || { log "sink died, restarting it"; start_sinks; }; }

# Rate, latency and bulk rows: one server at a time, each certificate pass in turn.
for cert in rsa ecdsa; do
    if [ $cert = rsa ]; then rows=$ROWS_RSA; else rows=$ROWS_ECDSA; fi
    # shellcheck disable=SC2086 # unquoted on purpose: collapses the list's whitespace
    rows=$(echo $rows | tr ' ' '\n' | grep -vx idle | tr '\n' ' ')
    [ -n "${rows// /}" ] || continue
    use_cert $cert
    for server in $SERVERS; do
        sink_ok || exit 1
        log "== $server, $cert"
        # shellcheck disable=SC2086
        measure_server "$server" "$cert" $rows
    done
done

# Idle-session memory last, smallest size first: if the time budget runs out, it is the
# optional larger sizes that go unmeasured, for every server alike.
for n in $IDLE_SIZES; do
    for cert in rsa ecdsa; do
        if [ $cert = rsa ]; then rows=$ROWS_RSA; else rows=$ROWS_ECDSA; fi
        echo " $rows " | tr '\n' ' ' | grep -q ' idle ' || continue
        use_cert $cert
        for server in $SERVERS; do
            sink_ok || exit 1
            log "== $server, $cert, $n idle sessions"
            measure_idle "$server" "$cert" "$n"
        done
    done
done

stop_pids "$SINK_PID"
log "measurements done; writing the report"
echo "total_seconds=$(elapsed)" >>"$OUT/env.txt"
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"
python3 "$here/report.py" "$OUT" || { echo "bench: report failed" >&2; exit 1; }
log "done in $(elapsed)s: $OUT/results.md"
