#!/usr/bin/env bash
# `make run`: the system on this machine. On the broker `make kafka-up` started, it runs a
# worker, the simulator feeding it live, and Prometheus and Alertmanager where they are
# installed (`make tools`; skipped with a message where not). Ctrl-C stops everything this script
# started; so does any one of them exiting (it says which, with the end of its log).
#
#   WEB_PORT (6066), PROMETHEUS_PORT (9090), ALERTMANAGER_PORT (9093): the ports, on 127.0.0.1.
#   DATA_DIR (.data): worker state, Prometheus and Alertmanager data, generated configs, logs/.
#   SIMULATE_ARGS: more options for `stream-app simulate`, e.g. '--breach sales:15' (watch the
#     alerts fire, then resolve), '--faults', '--seed 7', or '--config my-center.yaml'.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export WEB_PORT="${WEB_PORT:-6066}"
export KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
export TOPIC_PREFIX="${TOPIC_PREFIX:-}"
mkdir -p "${DATA_DIR:-$root/.data}"
DATA_DIR=$(cd "${DATA_DIR:-$root/.data}" && pwd)
export DATA_DIR
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-9093}"
read -r -a simulate_args <<<"${SIMULATE_ARGS:-}"
logs="$DATA_DIR/logs"
mkdir -p "$logs"
app="$root/.venv/bin/stream-app"
python="$root/.venv/bin/python"

say() { echo "run: $*"; }
die() { echo "run: $*" >&2; exit 1; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
answers() { curl -fs -o /dev/null --max-time 2 "$1"; }

[ -x "$app" ] || die "$app is missing: run 'make install' (or 'make run', which does)"
command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"

# Prometheus and Alertmanager: Debian's packages (`make tools`); upstream binary names work too.
prometheus=$(command -v prometheus || true)
alertmanager=$(command -v prometheus-alertmanager || command -v alertmanager || true)
[ -n "$prometheus" ] \
  || say "prometheus is not installed (Debian package prometheus; 'make tools' installs it where it may): no Prometheus, no alerts"
[ -n "$alertmanager" ] \
  || say "prometheus-alertmanager is not installed (Debian package prometheus-alertmanager; 'make tools' installs it where it may): no Alertmanager"

# A port already in use would only show up as a process dying a second later: say it now.
check_port() {
  ! port_taken "$2" || die "port $2 ($1) is already in use: stop what uses it or set $1 to another port"
}
check_port WEB_PORT "$WEB_PORT"
[ -z "$prometheus" ] || check_port PROMETHEUS_PORT "$PROMETHEUS_PORT"
[ -z "$alertmanager" ] || check_port ALERTMANAGER_PORT "$ALERTMANAGER_PORT"

# --- what this script starts, and stopping it ---------------------------------------------------
names=()
pids=()
finished=0

start() { # start NAME COMMAND...: in the background, output to $logs/NAME.log
  local name=$1
  shift
  "$@" >"$logs/$name.log" 2>&1 &
  names+=("$name")
  pids+=("$!")
}

stop_all() { # SIGTERM to everything still running; SIGKILL what is still there after 20 s
  local i pid
  deadline=$((SECONDS + 20))
  # A second Ctrl-C (or SIGTERM) while stopping: kill what is left now.
  trap 'echo; say "killing what is left"; deadline=0' INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then
        [ $deadline -eq 0 ] || say "${names[$i]} (pid $pid) did not stop within 20 s: killed"
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  done
  wait 2>/dev/null || true
}

simulator_summary() { # the summary the simulator prints when it stops
  local log="$logs/simulator.log"
  [ -f "$log" ] && grep -qE '^[0-9]+ calls: ' "$log" || return 0
  echo
  echo "  The simulator's summary (what the pipeline must report for what it sent):"
  awk '/^[0-9]+ calls: /{n=NR} {line[NR]=$0} END{for(i=n;i<=NR;i++) print "    " line[i]}' "$log"
  echo
}

finish() { # finish STATUS
  [ $finished -eq 1 ] && return
  finished=1
  trap - EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    stop_all
    simulator_summary
    say "stopped (the broker keeps running; 'make kafka-down' stops it)"
  fi
  exit "$1"
}
trap 'echo; say "stopping: ${names[*]}"; finish 130' INT
trap 'say "stopping: ${names[*]}"; finish 143' TERM
trap 'finish $?' EXIT

wait_until() { # wait_until NAME URL SECONDS: until URL answers, or fail if NAME exited
  local name=$1 url=$2 deadline=$((SECONDS + $3)) i pid=
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = "$name" ]; then pid=${pids[$i]}; fi
  done
  until answers "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run: $name exited during start-up; the end of $logs/$name.log:" >&2
      tail -n 20 "$logs/$name.log" | sed 's/^/    /' >&2
      finish 1
    fi
    [ $SECONDS -lt $deadline ] || { say "$name did not answer $url within $3 s; see $logs/$name.log" >&2; finish 1; }
    sleep 0.5
  done
}

# --- Prometheus and Alertmanager --------------------------------------------------------------
prometheus_url="http://127.0.0.1:$PROMETHEUS_PORT"
alertmanager_url="http://127.0.0.1:$ALERTMANAGER_PORT"
if [ -n "$alertmanager" ]; then
  start alertmanager "$alertmanager" \
    --config.file="$root/alertmanager/alertmanager.yml" \
    --storage.path="$DATA_DIR/alertmanager" \
    --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
    --cluster.listen-address=
fi
if [ -n "$prometheus" ]; then
  # A runtime copy of prometheus/prometheus.yml (the file users read and edit): the rules by
  # absolute path, the local worker on WEB_PORT and Alertmanager on ALERTMANAGER_PORT.
  "$python" - "$root/prometheus/prometheus.yml" "$DATA_DIR/prometheus.yml" \
    "$WEB_PORT" "$ALERTMANAGER_PORT" <<'PY'
import sys
from pathlib import Path

import yaml

source, target, web_port, alertmanager_port = sys.argv[1:]
config = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
here = Path(source).resolve().parent
config["rule_files"] = [str(here / pattern) for pattern in config.get("rule_files", [])]


def moved(targets: list[str], default: str, port: str) -> list[str]:
    local = {f"{host}:{default}" for host in ("127.0.0.1", "localhost")}
    return [t.rsplit(":", 1)[0] + ":" + port if t in local else t for t in targets]


for group in config.get("alerting", {}).get("alertmanagers", []):
    for static in group.get("static_configs", []):
        static["targets"] = moved(static["targets"], "9093", alertmanager_port)
for job in config.get("scrape_configs", []):
    if job.get("job_name") == "callcenter":
        for static in job.get("static_configs", []):
            static["targets"] = moved(static["targets"], "6066", web_port)
header = (
    f"# Generated by scripts/run.sh from {source} at each start: edit that file, not this one.\n"
    f"# The worker on port {web_port}, Alertmanager on port {alertmanager_port}, the rules by\n"
    "# absolute path.\n"
)
Path(target).write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
PY
  if command -v promtool >/dev/null 2>&1; then
    promtool check config "$DATA_DIR/prometheus.yml" >"$logs/promtool.log" 2>&1 \
      || die "prometheus/prometheus.yml or its rules are not valid:
$(sed 's/^/    /' "$logs/promtool.log")"
  fi
  start prometheus "$prometheus" \
    --config.file="$DATA_DIR/prometheus.yml" \
    --storage.tsdb.path="$DATA_DIR/prometheus" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT"
fi

# --- the worker, then the simulator feeding it ----------------------------------------------------
start worker "$app" worker
wait_until worker "http://127.0.0.1:$WEB_PORT/health" 90

# A moderately busy center, always open: the built-in three queues at twice their built-in peak
# rates (about 220 calls an hour, 3 to 4 a minute), staffed so that service level, ASA and
# abandon rate hover around their targets: the wallboard moves and an alert fires now and then.
# Real time (--speed 1) on purpose: the feed stays live, so stream time follows the wall clock,
# the "now" gauges age in real time and intervals close on time, as in production. (A faster run
# must start in the past and stays behind the wall clock until it catches up: a replay.)
sim_config="$DATA_DIR/simulator-run.yaml"
cat >"$sim_config" <<'YAML'
# Generated by scripts/run.sh: the simulated center of `make run` (see simulator.example.yaml).
profile: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
queues:
  sales:
    arrivals_per_hour: 120
    agents: 11
    talk_seconds: {dist: lognormal, mean: 240, sd: 150, max: 3600}
    timeout_seconds: 600
  support:
    arrivals_per_hour: 80
    agents: 13
    talk_seconds: {dist: lognormal, mean: 420, sd: 240, max: 3600}
    wrapup_seconds: {dist: exponential, mean: 60, max: 600}
    patience_seconds: {dist: exponential, mean: 300, max: 3600}
    timeout_seconds: 900
  vip:
    arrivals_per_hour: 20
    agents: 5
    ivr_seconds: {dist: lognormal, mean: 15, sd: 5, max: 120}
    ivr_only: 0.02
    talk_seconds: {dist: lognormal, mean: 300, sd: 120, max: 3600}
    patience_seconds: {dist: exponential, mean: 240, max: 3600}
    short_abandon_share: 0.01
    timeout_seconds: 60
    overflow: support
YAML
start simulator "$app" simulate --config "$sim_config" --speed 1 \
  --summary-json "$logs/simulator-summary.json" "${simulate_args[@]}"

[ -z "$alertmanager" ] || wait_until alertmanager "$alertmanager_url/-/ready" 60
[ -z "$prometheus" ] || wait_until prometheus "$prometheus_url/-/ready" 60

# --- where to look ------------------------------------------------------------------------------
echo
echo "  callcenter-metrics is running (pids: ${pids[*]})"
echo "    metrics:       http://127.0.0.1:$WEB_PORT/metrics"
echo "    health:        http://127.0.0.1:$WEB_PORT/health"
if [ -n "$prometheus" ]; then
  echo "    prometheus:    $prometheus_url  (targets: $prometheus_url/targets)"
  echo "    alerts:        $prometheus_url/alerts"
else
  echo "    prometheus:    not started (not installed)"
fi
if [ -n "$alertmanager" ]; then
  echo "    alertmanager:  $alertmanager_url  (its webhook receivers post to 127.0.0.1:5001)"
else
  echo "    alertmanager:  not started (not installed)"
fi
echo "    kafka:         $KAFKA_BOOTSTRAP, input topic ${TOPIC_PREFIX}call-events"
echo "    simulator:     live (--speed 1) from $sim_config${SIMULATE_ARGS:+ + $SIMULATE_ARGS}"
echo "                   its summary (calls, answered, abandoned per queue) is printed here when it"
echo "                   stops, and written to $logs/simulator-summary.json"
echo "  logs (tail -f):"
for name in "${names[@]}"; do printf '    %-14s %s\n' "$name:" "$logs/$name.log"; done
echo "  Ctrl-C stops all of them (the broker keeps running)."
echo

# Until Ctrl-C, or until one of them exits.
status=0
wait -n "${pids[@]}" || status=$?
for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    echo "run: ${names[$i]} exited (status $status); the end of $logs/${names[$i]}.log:" >&2
    tail -n 20 "$logs/${names[$i]}.log" | sed 's/^/    /' >&2
    say "stopping the rest"
    break
  fi
done
finish 1
