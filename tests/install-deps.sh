#!/usr/bin/env bash
# Install the Debian packages mailedge needs to build, test and demo. Idempotent and
# quiet when everything is already there (no apt-get update then). Needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

pkgs=(
  # build
  gcc make pkg-config libc6-dev libwolfssl-dev libev-dev libinih-dev libcmocka-dev
  # the bundled wolfSSL (wolfssl/build.sh): apt-get source needs dpkg-dev; Debian's source
  # has no generated configure
  dpkg-dev autoconf automake libtool
  # sanitizers and fuzzing (clang's libFuzzer and ASan runtime)
  clang libclang-rt-14-dev
  # tools used by the tests, the demo and the certificate script
  openssl ca-certificates curl swaks python3 python3-pytest procps iproute2
  # real backends for the integration tests
  postfix dovecot-core dovecot-imapd dovecot-pop3d
)
if [ -f "$here/integration/packages.txt" ]; then
  while read -r p _; do
    case "$p" in ""|\#*) ;; *) pkgs+=("$p") ;; esac
  done < "$here/integration/packages.txt"
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Postfix would otherwise ask how to configure itself; the tests bring their own config.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
