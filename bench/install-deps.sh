#!/usr/bin/env bash
# Install the Debian packages `make bench` needs: the peers it compares mailedge with
# (haproxy, hitch, stunnel4, nginx + mail module), gnuplot for the plots and OpenSSL's
# headers for bench/loadgen. Kept apart from tests/install-deps.sh on purpose: CI's
# `make test` must not need any of them. Idempotent, quiet when all is there.
#
# The peers are never run as system services: run.sh starts each binary itself, in the
# foreground, on loopback. So that installing them does not start nginx/haproxy/hitch
# on their default ports either, package scripts are told not to start services
# (policy-rc.d answering 101 "action forbidden") for the duration of the install.
set -euo pipefail

pkgs=(haproxy hitch stunnel4 nginx libnginx-mod-mail libnginx-mod-stream gnuplot-nox libssl-dev libev-dev
      openssl procps iproute2 coreutils curl python3)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "bench/install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi
echo "bench/install-deps: installing ${missing[*]}"

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# temporary, from mailedge bench/install-deps.sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=1
fi
cleanup() { [ "$made_policy" = 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
