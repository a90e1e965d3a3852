#!/usr/bin/env bash
# Debian packages the tests and `make run` use: prometheus (with promtool) and
# prometheus-alertmanager (with amtool), openssl, which scripts/kafka.sh needs for the TLS
# listener's certificate, and chromium, the browser of the wallboard's tests and screenshots
# (Playwright drives it; it downloads no browser of its own). Installed only where this user
# may (root with apt-get); elsewhere it says what is missing and the tests that need it are
# skipped with that message (under CI=true they fail instead).
set -euo pipefail
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
{ command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1; } \
  || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "tools: ${missing[*]} not installed and this user cannot install Debian packages;" \
    "install them (Debian/Ubuntu: apt-get install ${missing[*]}) or the tests needing them are skipped" >&2
  exit 0
fi
echo "tools: installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
# The packages enable system services; we run our own Prometheus and Alertmanager when we need
# them. Where no policy says otherwise, forbid service starts for the length of the install.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -q >/dev/null || true
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
  echo "tools: could not install ${missing[*]} (no Debian archive reachable?); tests needing them are skipped" >&2
  exit 0
fi
# Where a policy let a service start anyway, stop it through its own init script.
if command -v service >/dev/null 2>&1; then
  for unit in "${missing[@]}"; do service "$unit" stop >/dev/null 2>&1 || true; done
fi
