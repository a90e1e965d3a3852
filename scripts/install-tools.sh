#!/usr/bin/env bash
# Debian packages the tests and `make run` use: prometheus (with promtool). Installed only where
# this user may (root with apt-get); elsewhere it says what is missing and the tests that need
# it are skipped with that message.
set -euo pipefail
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "tools: installing ${missing[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || true
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  # The package enables a system service; we run our own Prometheus when we need one.
  if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
  pkill -x prometheus 2>/dev/null || true
else
  echo "tools: ${missing[*]} not installed and this user cannot install Debian packages; tests needing it are skipped" >&2
fi
