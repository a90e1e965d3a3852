# Sourced by scripts/run.sh and scripts/demo.sh: start background processes, wait for them to
# answer, and stop all of them on Ctrl-C, on SIGTERM, or when one of them exits.
#
# The sourcing script sets `me` (its name in messages) and `logs` (a directory), and may define
# `after_stop`, called once everything it started has stopped.

say() { echo "$me: $*"; }
die() { echo "$me: $*" >&2; exit 1; }
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
answers() { curl -fs -o /dev/null --max-time 2 "$1"; }
command -v curl >/dev/null 2>&1 || die "curl is required (apt-get install curl)"

# A port already in use would only show up as a process dying a second later: say it now.
check_port() { # check_port SETTING PORT
  ! port_taken "$2" || die "port $2 ($1) is already in use: stop what uses it or set $1 to another port"
}

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

pid_of() { # pid_of NAME
  local i
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = "$1" ]; then echo "${pids[$i]}"; fi
  done
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

finish() { # finish STATUS
  [ $finished -eq 1 ] && return
  finished=1
  trap - EXIT
  if [ ${#pids[@]} -gt 0 ]; then
    stop_all
    if declare -F after_stop >/dev/null; then after_stop; fi
    say "stopped (the broker keeps running; 'make kafka-down' stops it)"
  fi
  exit "$1"
}
trap 'echo; say "stopping: ${names[*]}"; finish 130' INT
trap 'say "stopping: ${names[*]}"; finish 143' TERM
trap 'finish $?' EXIT

exited() { # exited NAME STATUS: say so, with the end of its log
  echo "$me: $1 exited (status $2); the end of $logs/$1.log:" >&2
  tail -n 20 "$logs/$1.log" | sed 's/^/    /' >&2
}

wait_until() { # wait_until NAME URL SECONDS: until URL answers, or fail if NAME exited
  local name=$1 url=$2 deadline=$((SECONDS + $3)) pid
  pid=$(pid_of "$name")
  until answers "$url"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$me: $name exited during start-up; the end of $logs/$name.log:" >&2
      tail -n 20 "$logs/$name.log" | sed 's/^/    /' >&2
      finish 1
    fi
    [ $SECONDS -lt $deadline ] || { say "$name did not answer $url within $3 s; see $logs/$name.log" >&2; finish 1; }
    sleep 0.5
  done
}

wait_any() { # until Ctrl-C, or until one of them exits: then stop the others
  local status=0 i
  wait -n "${pids[@]}" || status=$?
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      exited "${names[$i]}" "$status"
      say "stopping the rest"
      break
    fi
  done
  finish 1
}
