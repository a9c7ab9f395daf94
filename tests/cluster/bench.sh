#!/usr/bin/env bash
# Redis Cluster measurements for BENCHMARKS.md (release build; not run in CI):
#   1. total beats/s of one bot vs twelve bots spread over the three masters (four per master),
#      through the same three replicas;
#   2. /connect p99 while the master of the bot's slot is killed (kill -9) and its replica promoted.
# A cluster of three masters and three replicas on 127.0.0.1, as tests/support starts it.
#   tests/cluster/bench.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN="${1:-10}"
cargo build --release --bins -q
BIN=target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORTS=()
declare -A PID_OF
for i in 1 2 3 4 5 6; do
  port=$(free_port); PORTS+=("$port"); mkdir -p "$WORK/$port"
  (cd "$WORK/$port" && exec redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
     --cluster-enabled yes --cluster-port "$(free_port)" --cluster-config-file nodes.conf --cluster-node-timeout 1000 \
     --cluster-replica-validity-factor 0 --cluster-require-full-coverage no >/dev/null) &
  PIDS+=($!); PID_OF[$port]=$!
done
for port in "${PORTS[@]}"; do until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done; done
redis-cli --cluster create $(for p in "${PORTS[@]}"; do echo "127.0.0.1:$p"; done) \
  --cluster-replicas 1 --cluster-yes >/dev/null
until [ "$(redis-cli -p "${PORTS[0]}" cluster info | tr -d '\r' | grep -c cluster_state:ok)" = 1 ]; do sleep 0.1; done
sleep 1
SEEDS=$(for p in "${PORTS[@]}"; do printf '127.0.0.1:%s,' "$p"; done); SEEDS=${SEEDS%,}

# A node that answers (not a killed one).
live_node() { for p in "${PORTS[@]}"; do redis-cli -p "$p" ping >/dev/null 2>&1 && { echo "$p"; return; }; done; }
# The master (port) serving a key's slot, as a live node sees it.
master_of() {
  local node; node=$(live_node)
  local slot; slot=$(redis-cli -p "$node" cluster keyslot "$1")
  redis-cli -p "$node" cluster slots | tr -d '\r' | awk -v slot="$slot" '
    NR%1==0 { line[NR]=$0 } END { for (i=1;i<=NR;i++) if (line[i] ~ /^[0-9]+$/ && line[i+1] ~ /^[0-9]+$/ && line[i]+0<=slot && slot<=line[i+1]+0) { print line[i+3]; exit } }'
}

# Twelve prefixes, four per master.
BOTS=()
declare -A PER_MASTER
i=0
while [ "${#BOTS[@]}" -lt 12 ]; do
  prefix="bench-$i"; master=$(master_of "{$prefix}:"); i=$((i+1))
  if [ "${PER_MASTER[$master]:-0}" -lt 4 ]; then PER_MASTER[$master]=$(( ${PER_MASTER[$master]:-0} + 1 )); BOTS+=("$prefix"); fi
done

REPLICAS=()
start_replicas() { # env assignments...; sets URLS
  local urls=()
  for r in 1 2 3; do
    local port; port=$(free_port)
    env -i PATH="$PATH" HOST=127.0.0.1 PORT="$port" REDIS_CLUSTER="$SEEDS" RUST_LOG=warn \
      QUARANTINE_FRESH_REDIS=false FAILED_AUTH_PER_MINUTE=0 "$@" "$BIN/shardman" >>"$WORK/replicas.log" 2>&1 &
    PIDS+=($!); REPLICAS+=($!); urls+=("http://127.0.0.1:$port")
    until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.1; done
  done
  URLS=$(IFS=,; echo "${urls[*]}")
}
stop_replicas() { for pid in "${REPLICAS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done; REPLICAS=(); sleep 0.5; }

echo "== 1 bot, 96 processes beating back to back, ${SECONDS_PER_RUN}s"
start_replicas SECRET=one KEY_PREFIX=one-bot MAX_SHARDS=96 MAX_SECONDS=30
ONE=$("$BIN/shardman-load" --target "$URLS" --secret one --processes 96 --beat-interval 0 \
  --max-seconds 30 --duration "$SECONDS_PER_RUN" --print /routes/beat/per_second 2>/dev/null)
echo "beats/s: $ONE"
stop_replicas

echo "== 12 bots (4 per master), 8 processes each beating back to back, ${SECONDS_PER_RUN}s"
: >"$WORK/bots.toml"
for prefix in "${BOTS[@]}"; do
  printf '[[bot]]\nname = "%s"\nsecret = "%s-secret"\nkey_prefix = "%s"\nmax_shards = 8\n\n' \
    "$prefix" "$prefix" "$prefix" >>"$WORK/bots.toml"
done
start_replicas BOTS_FILE="$WORK/bots.toml" MAX_SECONDS=30
LOADS=()
for prefix in "${BOTS[@]}"; do
  "$BIN/shardman-load" --target "$URLS" --secret "$prefix-secret" --processes 8 --beat-interval 0 \
    --max-seconds 30 --duration "$SECONDS_PER_RUN" --print /routes/beat/per_second \
    >"$WORK/$prefix.rate" 2>/dev/null &
  LOADS+=($!)
done
wait "${LOADS[@]}"
TWELVE=$(cat "$WORK"/bench-*.rate | awk '{ total += $1 } END { printf "%.0f", total }')
echo "beats/s (sum of 12 bots): $TWELVE"
stop_replicas

echo "== /connect p99 with 8 of 16 shards held, without and with a failover (kill -9 of the master at 3 s)"
start_replicas SECRET=fo KEY_PREFIX=failover MAX_SHARDS=16 MAX_SECONDS=10 REDIS_TIMEOUT_MS=500
QUIET=$("$BIN/shardman-load" --target "$URLS" --secret fo --mode connect-latency --fill 8 \
  --workers 4 --max-seconds 10 --duration 5 --print /routes/connect/latency_ms/p99 2>/dev/null)
echo "/connect p99 without a failover, ms: $QUIET"
VICTIM=$(master_of "{failover}:")
"$BIN/shardman-load" --target "$URLS" --secret fo --mode connect-latency --fill 8 --workers 4 \
  --max-seconds 10 --duration 12 --request-timeout 2 --json "$WORK/failover.json" 2>/dev/null &
LOAD=$!
sleep 3
kill -9 "${PID_OF[$VICTIM]}"
KILLED=$(date +%s%N)
until NEW=$(master_of "{failover}:") && [ -n "$NEW" ] && [ "$NEW" != "$VICTIM" ]; do sleep 0.05; done
echo "failover (kill -9 to the replica serving the slot): $(( ($(date +%s%N) - KILLED) / 1000000 )) ms"
wait "$LOAD" || true
python3 - "$WORK/failover.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["routes"]["connect"]
print("/connect during the failover run: p50 %.2f ms, p99 %.2f ms, max %.2f ms, statuses %s"
      % (c["latency_ms"]["p50"], c["latency_ms"]["p99"], c["latency_ms"]["max"], c["statuses"]))
print("double grants:", r.get("safety", {}).get("double_grants"))
PY
