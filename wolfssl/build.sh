#!/usr/bin/env bash
# wolfssl/build.sh [--force] OUTDIR
#
# Builds wolfSSL from Debian's source package (so Debian's security patches are in it) with
# the assembly speed-ups for this machine's CPU and the features mailedge uses, as a static
# library in OUTDIR/install. Does nothing when OUTDIR/stamp says the same source version was
# already built with the same flags and patches. See wolfssl/README.md.
set -euo pipefail

# Bump when the build procedure changes in a way the flags below do not show.
BUILD_REV=5

force=0
if [ "${1:-}" = --force ]; then
	force=1
	shift
fi
if [ $# -ne 1 ]; then
	echo "usage: $0 [--force] OUTDIR" >&2
	exit 2
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
src=$out/src
stamp=$out/stamp
here=$(cd "$(dirname "$0")" && pwd)
# Called from make: a nested make must not see the outer one's jobserver or flags.
unset MAKEFLAGS MFLAGS MAKELEVEL
# Two builds into one OUTDIR (e.g. two make runs) take turns; the second then finds it done.
exec 9>"$out/.lock"
flock 9

say() { echo "wolfssl/build.sh: $*" >&2; }
die() {
	say "$*"
	exit 1
}

# --- configure flags -------------------------------------------------------------------
# What mailedge negotiates or calls (proxy/tls.c, tests/unit/test_tls.c). Anything it never
# negotiates is left out: TLS 1.0/1.1, SSLv3, NULL, anonymous, DES3, RC4, finite-field DH.
features=(
	--enable-static --disable-shared
	--disable-examples --disable-crypttests # wolfssl/bench.sh builds the benchmark
	--enable-tls13 --enable-tlsv12 --disable-oldtls --disable-sslv3
	--enable-sni --enable-alpn --enable-session-ticket --enable-supportedcurves
	--enable-extended-master --enable-secure-renegotiation-info
	--enable-ocsp --enable-ocspstapling --enable-ocspstapling2 --enable-crl
	--enable-ecc --enable-curve25519 --enable-ed25519 --enable-curve448 --enable-ed448
	--enable-aesgcm --enable-chacha --enable-poly1305
	# No OpenSSL compatibility layer (opensslextra): it embeds a 3.7 KB peer-certificate
	# object in every connection (sizeof(WOLFSSL) 5680 -> 1296 bytes without it). What mailedge
	# used it for is done without it: TLS 1.2 curves are limited by the groups list
	# (patches/0002), cipher bits come from the suite name (proxy/tls.c).
	--enable-harden
	--disable-anon --disable-nullcipher --disable-des3 --disable-arc4 --disable-dh
	--disable-psk
	# mailedge runs one event loop per process and never calls wolfSSL from two threads.
	# Single-threaded, every WOLFSSL shares its WOLFSSL_CTX's RNG instead of seeding and
	# health-testing a DRBG of its own per connection (SHA-256 work and a getrandom() per
	# handshake), and no mutex is taken around the session cache. Each WOLFSSL keeps its own
	# cipher suite list all the same (patches/0003, MAILEDGE_OWN_SUITES).
	--enable-singlethreaded
)

# Speed-ups for the CPU family of the build machine.
arch=$(uname -m)
case $arch in
x86_64 | amd64)
	# intelasm: AES-GCM, SHA-2, ChaCha20/Poly1305 in AVX1/AVX2 assembly, chosen at run
	# time by cpuid (a CPU without AVX2 or AES-NI gets the next best code, not SIGILL).
	asm=(--enable-intelasm --enable-aesni --enable-sp --enable-sp-asm)
	;;
aarch64 | arm64)
	# wolfSSL 5.5's ARMv8 code has no run-time detection: it is compiled with
	# -mcpu=generic+crypto, so only use it where the CPU has the crypto extensions
	# (not, e.g., a Raspberry Pi 4).
	if grep -qw aes /proc/cpuinfo && grep -qw pmull /proc/cpuinfo &&
		grep -qw sha2 /proc/cpuinfo; then
		asm=(--enable-armasm --enable-sp --enable-sp-asm)
	else
		asm=(--enable-sp --enable-sp-asm)
	fi
	;;
*)
	asm=(--enable-sp)
	;;
esac

# Debian's hardening build flags (stack protector, fortify, CET...), without the
# build-directory-dependent -ffile-prefix-map so that the key below stays stable.
hardening() {
	DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get "$1" |
		tr ' ' '\n' | grep -v '^-ffile-prefix-map=' | tr '\n' ' ' | sed 's/ *$//'
}
command -v dpkg-buildflags >/dev/null || die "dpkg-buildflags missing (apt-get install dpkg-dev)"
cflags=$(hardening CFLAGS)
# wolfSSL_CIPHER_get_name gives OpenSSL-style TLS 1.2 names ("ECDHE-RSA-AES128-GCM-SHA256"),
# which mailedge logs like Postfix does. Debian's build gets that as a side effect of
# WOLFSSL_QT; here it is asked for.
# MAILEDGE_TLS12_GROUPS and MAILEDGE_OWN_SUITES switch on patches 0002 and 0003; being in
# CPPFLAGS they also land in wolfssl/options.h, where proxy/tls.c checks for the first.
cppflags="$(hardening CPPFLAGS) -DWOLFSSL_CIPHER_INTERNALNAME -DMAILEDGE_TLS12_GROUPS -DMAILEDGE_OWN_SUITES"
ldflags=$(hardening LDFLAGS)
cc=${CC:-cc}

# --- mailedge's patches and checks ----------------------------------------------------
# wolfssl/patches/*.patch are applied in name order (C collation) with patch -p1 on top of
# Debian's tree; wolfssl/x25519-check.c is built against the new library and run before it
# is installed. Both are part of the key: changing either rebuilds.
mapfile -t patches < <(find "$here/patches" -maxdepth 1 -type f -name '*.patch' 2>/dev/null |
	LC_ALL=C sort)
check_src=$here/x25519-check.c
[ -f "$check_src" ] || die "$check_src missing"
sums() { sha256sum "$@" | sed "s|  $here/| |"; }
patch_key=none
if [ ${#patches[@]} -gt 0 ]; then
	patch_key=$(sums "${patches[@]}" | tr '\n' ' ' | sed 's/ *$//')
fi
check_key=$(sums "$check_src")
# For "mailedge -V": "0001" for 0001-something.patch.
patch_ids=$(for p in "${patches[@]}"; do b=${p##*/}; echo "${b%%-*}"; done | tr '\n' ' ' |
	sed 's/ *$//')

# --- the Debian source version ---------------------------------------------------------
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

# deb822 (.sources): each enabled "deb" stanza for this release, as a "deb-src" stanza.
derive_deb822() {
	awk -v cn="$codename" '
	function flush(   i) {
		if (tl && types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^[ \t]*no/ && suites_ok)
			{ for (i = 1; i <= n; i++) print (i == tl ? "Types: deb-src" : lines[i]); print "" }
		n = 0; types = ""; enabled = ""; suites_ok = 0; tl = 0
	}
	/^[ \t]*$/ { flush(); next }
	{ lines[++n] = $0 }
	tolower($0) ~ /^types:/ { types = substr($0, 7); tl = n }
	tolower($0) ~ /^enabled:/ { enabled = tolower(substr($0, 9)) }
	tolower($0) ~ /^suites:/ {
		k = split(substr($0, 8), a, /[ \t]+/)
		for (i = 1; i <= k; i++) if (a[i] == cn || index(a[i], cn "-") == 1) suites_ok = 1
	}
	END { flush() }' "$1"
}
# One-line format (.list): "deb [options] URI SUITE COMPONENT..." for this release.
derive_list() {
	awk -v cn="$codename" '
	$1 == "deb" {
		i = 2
		if ($2 ~ /^\[/) while ($i !~ /\]$/ && i < NF) i++
		if ($2 ~ /^\[/) i++
		s = $(i + 1)
		if (s == cn || index(s, cn "-") == 1) { sub(/^deb/, "deb-src"); print }
	}' "$1"
}

# Derives deb-src entries from the Debian mirror(s) apt is already configured with (no host
# name is written here) and refreshes the package lists.
add_debsrc() {
	local f d822="" list="" tmp
	[ -n "$codename" ] || die "no VERSION_CODENAME in /etc/os-release: cannot derive deb-src"
	[ "$(id -u)" = 0 ] || die "no deb-src entry for $codename: run as root once (or add one)"
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] && [ "${f##*/}" != mailedge-deb-src.sources ] && d822+=$(derive_deb822 "$f")$'\n'
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] && [ "${f##*/}" != mailedge-deb-src.list ] && list+=$(derive_list "$f")$'\n'
	done
	[ -n "${d822//[$'\n']/}${list//[$'\n']/}" ] ||
		die "no Debian $codename entry in the apt sources to derive a deb-src entry from"
	if [ -n "${d822//[$'\n']/}" ]; then
		tmp=/etc/apt/sources.list.d/mailedge-deb-src.sources
		{ echo "# Added by mailedge wolfssl/build.sh for 'apt-get source wolfssl'"; echo "$d822"; } >"$tmp"
		say "added $tmp"
	fi
	if [ -n "${list//[$'\n']/}" ]; then
		tmp=/etc/apt/sources.list.d/mailedge-deb-src.list
		{ echo "# Added by mailedge wolfssl/build.sh for 'apt-get source wolfssl'"; echo "$list"; } >"$tmp"
		say "added $tmp"
	fi
	apt-get update -qq
}

# The .dsc that "apt-get source" would fetch names the version (local lists only, no network).
source_version() {
	apt-get source --print-uris wolfssl 2>/dev/null |
		sed -n "s/^'[^']*' wolfssl_\(.*\)\.dsc .*/\1/p" | head -n 1
}

ver=$(source_version || true)
if [ -z "$ver" ]; then
	if [ $force = 0 ] && [ -f "$stamp" ] && [ -f "$out/install/lib/libwolfssl.a" ] &&
		[ "$(id -u)" != 0 ]; then
		say "cannot see Debian's wolfssl source version (no deb-src); keeping $out/install"
		exit 0
	fi
	say "no deb-src entry for wolfssl: deriving one from the configured Debian mirror"
	add_debsrc
	ver=$(source_version || true)
	[ -n "$ver" ] || die "apt-get source wolfssl still finds no source package"
fi

key=$(printf '%s\n' "build-rev: $BUILD_REV" "wolfssl: $ver" "arch: $arch" \
	"configure: ${features[*]} ${asm[*]}" "cc: $cc $("$cc" -dumpfullversion 2>/dev/null)" \
	"cflags: $cflags" "cppflags: $cppflags" "ldflags: $ldflags" \
	"patches: $patch_key" "check: $check_key")

if [ $force = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] &&
	[ -f "$out/install/lib/libwolfssl.a" ]; then
	say "wolfSSL $ver up to date in $out/install"
	exit 0
fi

# --- fetch, configure, build, install -------------------------------------------------
for t in autoreconf libtoolize automake dpkg-source patch make "$cc"; do
	command -v "$t" >/dev/null ||
		die "$t missing (apt-get install autoconf automake libtool dpkg-dev patch make gcc)"
done

start=$(date +%s)
say "building wolfSSL $ver (${asm[*]}) in $out"
rm -rf "$src" "$out/install.new"
mkdir -p "$src"
sandbox=()
# As root apt-get would download as user _apt, who may not be able to write here.
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
(cd "$src" && apt-get -qq "${sandbox[@]}" source "wolfssl=$ver" >/dev/null) ||
	die "apt-get source wolfssl=$ver failed"
tree=$(find "$src" -mindepth 1 -maxdepth 1 -type d -name 'wolfssl-*' | head -n 1)
[ -n "$tree" ] || die "no wolfssl-* directory after apt-get source"

cd "$tree"
# mailedge's patches, after Debian's (dpkg-source applied those). No fuzz: if a Debian
# update moves the code a patch touches, the build stops here instead of guessing.
: >"$src/patch.log"
for p in "${patches[@]}"; do
	echo "== ${p##*/}" >>"$src/patch.log"
	patch -p1 --batch --forward --fuzz=0 --no-backup-if-mismatch -i "$p" \
		>>"$src/patch.log" 2>&1 || {
		cat "$src/patch.log" >&2
		die "patch ${p##*/} does not apply to Debian wolfssl $ver (log: $src/patch.log)"
	}
done
[ ${#patches[@]} -eq 0 ] || say "applied ${#patches[@]} patch(es): $patch_ids"
# Debian ships no generated configure (debhelper runs autoreconf too).
autoreconf -fi >"$src/autoreconf.log" 2>&1 || {
	tail -n 20 "$src/autoreconf.log"
	die "autoreconf failed (log: $src/autoreconf.log)"
}
./configure --prefix="$out/install.new" "${features[@]}" "${asm[@]}" \
	CC="$cc" CFLAGS="$cflags" CPPFLAGS="$cppflags" LDFLAGS="$ldflags" \
	>"$src/configure.log" 2>&1 || {
	tail -n 20 "$src/configure.log"
	die "configure failed (log: $src/configure.log)"
}
make -j"$(nproc)" >"$src/make.log" 2>&1 || {
	tail -n 30 "$src/make.log"
	die "make failed (log: $src/make.log)"
}
make install >>"$src/make.log" 2>&1 || die "make install failed (log: $src/make.log)"
# X25519 key generation (patch 0001) against RFC 7748 and the unchanged ladder, before the
# library is installed: a failure leaves the previous build and stamp in place.
"$cc" -O2 -Wall -Wextra -I"$out/install.new/include" -o "$src/x25519-check" \
	"$check_src" "$out/install.new/lib/libwolfssl.a" -lm -lpthread \
	>"$src/check.log" 2>&1 || {
	cat "$src/check.log" >&2
	die "building wolfssl/x25519-check.c failed (log: $src/check.log)"
}
"$src/x25519-check" >>"$src/check.log" 2>&1 || {
	cat "$src/check.log" >&2
	die "wolfssl/x25519-check failed: X25519 key generation is wrong (log: $src/check.log)"
}
say "$(tail -n 1 "$src/check.log")"
# For "mailedge -V": which Debian source this library was built from.
printf '/* Written by mailedge wolfssl/build.sh. */\n#define MAILEDGE_WOLFSSL_SOURCE "%s"\n' \
	"Debian wolfssl $ver${patch_ids:+ + mailedge patch $patch_ids}" \
	>"$out/install.new/include/mailedge-wolfssl-build.h"

rm -rf "$out/install"
mv "$out/install.new" "$out/install"
# The configure summary says what was enabled; keep it next to the library.
sed -n '/Features/,$p' "$src/configure.log" >"$out/install/configure-summary.txt"
printf '%s\n' "$key" >"$stamp"
say "wolfSSL $ver built in $(($(date +%s) - start)) s: $out/install/lib/libwolfssl.a"
