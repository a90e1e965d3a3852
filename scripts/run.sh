#!/usr/bin/env bash
# `make run`: a worker on the local broker (the broker is started by `make kafka-up`).
# Ctrl-C stops everything this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export WEB_PORT="${WEB_PORT:-6066}"
export DATA_DIR="${DATA_DIR:-$root/.data}"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "run: stopped (the broker keeps running; 'make kafka-down' stops it)"
}
trap cleanup INT TERM EXIT

.venv/bin/stream-app worker &
pids+=($!)

for _ in $(seq 1 60); do
  curl -fs "http://127.0.0.1:$WEB_PORT/health" >/dev/null 2>&1 && break
  sleep 1
done
cat <<MSG

  callcenter-metrics is running
    metrics:  http://127.0.0.1:$WEB_PORT/metrics
    health:   http://127.0.0.1:$WEB_PORT/health
    kafka:    127.0.0.1:9092 (topics under TOPIC_PREFIX='${TOPIC_PREFIX:-}')
  Ctrl-C stops the worker.

MSG
wait -n "${pids[@]}"
