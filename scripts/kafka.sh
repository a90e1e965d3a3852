#!/usr/bin/env bash
# The local Kafka broker: Apache Kafka 4.1.1 from its Maven Central jars, single-node KRaft.
#   scripts/kafka.sh up | down | status | fetch
# Jars are cached in kafka/.cache, data, log and pid live in kafka/.run (both git-ignored).
# Two client listeners: PLAINTEXT on KAFKA_PORT (9092) and SASL_SSL with SCRAM on
# KAFKA_SASL_PORT (9094), its CA and certificate made with openssl in $KAFKA_RUN_DIR/tls.
# A broker already running with another configuration is restarted to this one.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/kafka/.cache"
libs="$cache/libs"
run="${KAFKA_RUN_DIR:-$root/kafka/.run}"
data="$run/data"
log="$run/broker.log"
pidfile="$run/broker.pid"
props="$run/server.properties"
tls="$run/tls"
host=127.0.0.1
port="${KAFKA_PORT:-9092}"
sasl_port="${KAFKA_SASL_PORT:-9094}"
controller_port="${KAFKA_CONTROLLER_PORT:-19093}"
python="${PYTHON:-$root/.venv/bin/python}"

die() { echo "kafka: $*" >&2; exit 1; }

need_tools() {
  command -v java >/dev/null 2>&1 || die "Java 17 or newer is required (java not found on PATH); on Debian: apt-get install openjdk-17-jre-headless"
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  [ -n "$v" ] && [ "$v" -ge 17 ] || die "Java 17 or newer is required, found: $(java -version 2>&1 | head -n1)"
  command -v openssl >/dev/null 2>&1 || die "openssl is required to make the TLS listener's certificate; on Debian: apt-get install openssl"
}

# A CA and a broker certificate for 127.0.0.1 and localhost, made once: the broker reads
# broker.pem (key and chain, a PEM keystore), clients trust ca.pem (KAFKA_SSL_CAFILE).
certificates() {
  [ -f "$tls/broker.pem" ] && [ -f "$tls/ca.pem" ] && return 0
  echo "kafka: making the TLS listener's CA and certificate in $tls"
  mkdir -p "$tls"
  (
    cd "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
      -subj "/CN=callcenter-metrics local CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign"
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.crt \
      -days 3650 -extfile broker.ext
    openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
    cat broker.pk8 broker.crt ca.pem > broker.pem.new && mv broker.pem.new broker.pem
    rm -f broker.csr broker.ext broker.pk8 ca.srl
  ) >>"$log" 2>&1 || die "openssl could not make the certificates, see $log"
}

# The broker's configuration: kafka/server.properties, then what depends on this machine.
config() {
  cat "$root/kafka/server.properties"
  cat <<EOF
controller.quorum.voters=1@$host:$controller_port
listeners=PLAINTEXT://$host:$port,CONTROLLER://$host:$controller_port,SASL_SSL://$host:$sasl_port
advertised.listeners=PLAINTEXT://$host:$port,SASL_SSL://$host:$sasl_port
ssl.keystore.type=PEM
ssl.keystore.location=$tls/broker.pem
log.dirs=$data
EOF
}

fetch() {
  local stamp="$libs/.pom.sha256" want
  want=$(sha256sum "$root/kafka/pom.xml" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  command -v mvn >/dev/null 2>&1 || die "Maven is required to download the broker's jars (mvn not found on PATH); on Debian: apt-get install maven"
  echo "kafka: downloading Apache Kafka 4.1.1 jars into kafka/.cache (once)"
  rm -rf "$libs"
  MAVEN_OPTS="${MAVEN_OPTS:-} -Djansi.passthrough=false -Dstyle.color=never" mvn -q -B --no-transfer-progress -Dstyle.color=never -f "$root/kafka/pom.xml" -Dmaven.repo.local="$cache/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs" \
    || die "Maven could not fetch the broker's jars (see the output above)"
  echo "$want" > "$stamp"
}

alive() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/$host/${1:-$port}") 2>/dev/null; }

ready() {
  # A real client round trip, not just an open port.
  if [ -x "$python" ]; then
    "$python" - "$host:$port" <<'PY' >/dev/null 2>&1
import asyncio, sys
from aiokafka.admin import AIOKafkaAdminClient
async def main() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=sys.argv[1], request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()
asyncio.run(main())
PY
  else
    port_open && grep -q "Kafka Server started" "$log" 2>/dev/null
  fi
}

java_cmd() {
  # A heap for tens of thousands of partitions: the test suite creates topics under a fresh
  # prefix per test, and a dev broker kept for days holds every one of them (512 MiB ran out).
  exec java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$root/kafka/log4j2.yaml" \
    -cp "$libs/*" "$@"
}

up() {
  need_tools
  mkdir -p "$data"
  certificates
  local wanted; wanted=$(config)
  if alive && [ "$wanted" != "$(cat "$props" 2>/dev/null)" ]; then
    echo "kafka: the broker runs with an older configuration; restarting it"
    down
  fi
  if alive && ready; then echo "kafka: already running on $host:$port (pid $(cat "$pidfile"))"; return 0; fi
  if ! alive && port_open; then
    if ready; then echo "kafka: a broker already answers on $host:$port (not started by this script); using it"; return 0; fi
    die "port $port is taken by something that is not a Kafka broker"
  fi
  fetch
  printf '%s\n' "$wanted" > "$props"
  if [ ! -f "$data/meta.properties" ]; then
    local id
    id=$( (java_cmd kafka.tools.StorageTool random-uuid) | tail -n1)
    echo "kafka: formatting storage in $data (cluster $id)"
    (java_cmd kafka.tools.StorageTool format -g -t "$id" -c "$props") >>"$log" 2>&1 \
      || die "storage format failed, see $log"
  fi
  if ! alive; then
    echo "kafka: starting the broker (log: $log)"
    nohup bash -c "$(declare -f java_cmd); root='$root' libs='$libs'; java_cmd kafka.Kafka '$props'" >>"$log" 2>&1 &
    echo $! > "$pidfile"
  fi
  local deadline=$((SECONDS + 120))
  until ready && port_open "$sasl_port"; do
    alive || die "the broker exited during start-up; last lines of $log:
$(tail -n 30 "$log")"
    [ $SECONDS -lt $deadline ] || die "the broker did not accept clients within 120 s; see $log"
    sleep 1
  done
  echo "kafka: ready on $host:$port, SASL_SSL on $host:$sasl_port (pid $(cat "$pidfile"))"
}

down() {
  if ! alive; then echo "kafka: not running"; rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  echo "kafka: stopping the broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then echo "kafka: no clean stop within 60 s, killing" >&2; kill -KILL "$pid" 2>/dev/null || true; break; fi
    sleep 0.5
  done
  rm -f "$pidfile"
  echo "kafka: stopped"
}

status() {
  if alive && ready; then echo "kafka: running on $host:$port (pid $(cat "$pidfile"))"; else echo "kafka: not running"; return 1; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  fetch) need_tools; fetch ;;
  *) echo "usage: $0 up|down|status|fetch" >&2; exit 2 ;;
esac
