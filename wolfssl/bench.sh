#!/usr/bin/env bash
# wolfssl/bench.sh OUTDIR [benchmark options...]
#
# wolfSSL's own benchmark (wolfcrypt/benchmark/benchmark.c from the Debian source that
# wolfssl/build.sh fetched into OUTDIR/src), built twice: against Debian's libwolfssl
# (libwolfssl-dev) and against the bundled static build in OUTDIR/install. Runs both on
# what a mail TLS edge spends its CPU on: AES-GCM and ChaCha20-Poly1305 for bulk data, RSA-2048
# and ECDSA P-256 signatures and X25519/P-256 key agreement for handshakes.
set -euo pipefail

if [ $# -lt 1 ]; then
	echo "usage: $0 OUTDIR [benchmark options, default: the handshake and bulk set]" >&2
	exit 2
fi
out=$(cd "$1" && pwd)
shift
tree=$(find "$out/src" -mindepth 1 -maxdepth 1 -type d -name 'wolfssl-*' | head -n 1)
[ -n "$tree" ] || {
	echo "bench.sh: no wolfSSL source in $out/src: run wolfssl/build.sh $out first" >&2
	exit 1
}
cc=${CC:-cc}
src=$tree/wolfcrypt/benchmark/benchmark.c
mkdir -p "$out/bench"

# Each copy gets the options.h of the library it is linked with.
"$cc" -O2 -I"$out/install/include" -iquote "$tree" -o "$out/bench/benchmark-bundled" "$src" \
	"$out/install/lib/libwolfssl.a" -lm -lpthread
have_system=1
if ! "$cc" -O2 -iquote "$tree" -o "$out/bench/benchmark-system" "$src" -lwolfssl -lm -lpthread 2>"$out/bench/system.log"; then
	echo "bench.sh: no benchmark against Debian's libwolfssl (is libwolfssl-dev installed?):" >&2
	tail -n 5 "$out/bench/system.log" >&2
	have_system=0
fi

opts=("$@")
[ ${#opts[@]} -gt 0 ] || opts=(-aes-gcm -chacha20-poly1305 -rsa -rsa_sign -ecc -p256 -x25519)

run() {
	echo "== $1"
	"$out/bench/benchmark-$1" "${opts[@]}" | grep -vE '^-+$|^ *$'
}
[ $have_system = 1 ] && run system
run bundled
