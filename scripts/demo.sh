#!/usr/bin/env bash
# `make demo`: a month of a real call center through the pipeline. On the broker `make kafka-up`
# started, it runs a worker and replays into it the Technion "Anonymous Bank" month committed in
# data/ (February 1999, 33,066 calls), as fast as the broker takes it, then keeps the worker up
# so its /metrics can be read. Ctrl-C stops what it started.
#
# Each run uses a fresh TOPIC_PREFIX (demo-<UTC time>-), so it starts from empty topics and
# state, and its figures are the month's own whatever ran before; set TOPIC_PREFIX to choose one.
#   WEB_PORT (6066): the worker's port, on 127.0.0.1.
#   DATA_DIR (.data): the demo keeps its worker state and logs in $DATA_DIR/demo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export WEB_PORT="${WEB_PORT:-6066}"
export KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
export TOPIC_PREFIX="${TOPIC_PREFIX:-demo-$(date -u +%Y%m%d-%H%M%S)-}"
demo="${DATA_DIR:-$root/.data}/demo"
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)
logs="$demo/logs"
mkdir -p "$logs"
# The state of an earlier demo belongs to other topics: each run starts clean.
rm -rf "$demo/worker"
export DATA_DIR="$demo/worker"
app="$root/.venv/bin/stream-app"
month="$root/data/anonymous-bank-1999-02.tsv.xz"

me=demo
# shellcheck source=scripts/processes.sh
. "$root/scripts/processes.sh"

[ -x "$app" ] || die "$app is missing: run 'make install' (or 'make demo', which does)"
[ -f "$month" ] || die "$month is missing: it is part of the repository"
check_port WEB_PORT "$WEB_PORT"

metrics="http://127.0.0.1:$WEB_PORT/metrics"
start worker "$app" worker
wait_until worker "http://127.0.0.1:$WEB_PORT/health" 90
start replay "$app" replay anonymous-bank "$month"

echo
echo "  callcenter-metrics demo: the Technion month (February 1999) replayed into a worker"
echo "    metrics:   $metrics"
echo "               e.g. curl -s $metrics | grep 'window=\"today\"'"
echo "    health:    http://127.0.0.1:$WEB_PORT/health"
echo "    kafka:     $KAFKA_BOOTSTRAP, topics ${TOPIC_PREFIX}call-events, ${TOPIC_PREFIX}queue-metrics, …"
echo "    logs:      $logs/worker.log, $logs/replay.log"
echo "  Queues are the bank's service types (PS, NW, NE, TT, IN, PE); times are read as UTC, so"
echo "  stream time, the 'today' window and the intervals follow the data's clock, not yours."
echo "  Ctrl-C stops the worker (the broker keeps running)."
echo

# The replay ends by itself: then say what it sent and keep the worker up for reading.
replay=$(pid_of replay)
worker=$(pid_of worker)
status=0
wait -n "$replay" "$worker" || status=$?
if kill -0 "$worker" 2>/dev/null && ! kill -0 "$replay" 2>/dev/null && [ "$status" -eq 0 ]; then
  say "replay done: $(tail -n 1 "$logs/replay.log")"
  say "the worker drains the backlog in a few minutes (about 3 on an idle 2-core machine), until"
  say "callcenter_stream_time_seconds reaches the end of February; the last intervals stay open."
  wait "$worker" || status=$?
  exited worker "$status"
  finish 1
fi
for name in replay worker; do
  if ! kill -0 "$(pid_of "$name")" 2>/dev/null; then exited "$name" "$status"; break; fi
done
say "stopping the rest"
finish 1
