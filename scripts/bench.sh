#!/usr/bin/env bash
# Benchmarks shardman on this machine, side by side in one run, and prints a Markdown table
# (results go in BENCHMARKS.md). Not a test: numbers depend on the machine.
#
#   scripts/bench.sh           full size (release build; a few minutes)
#   scripts/bench.sh --tiny    tiny size: checks that the script still works (CI runs this)
#
# Measures:
#   1. /beat throughput through one replica vs redis-benchmark running the same beat script
#      (EVALSHA, the exact call the replica makes, captured with MONITOR) on the same Redis;
#   2. /connect p99 with MAX_SHARDS 16, 1,024 and 65,536, all but 4 shards held;
#   3. a cold start of N processes connecting at once through three replicas;
#   4. Redis bytes per held shard and one replica's RSS with N shards held.
# Env: SHARDMAN_BIN / SHARDMAN_LOAD_BIN use prebuilt binaries; BENCH_OUT also writes the table there.
# Needs redis-server, redis-cli, redis-benchmark (Debian: redis-server, redis-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

tiny=false
[ "${1:-}" = "--tiny" ] && tiny=true
if $tiny; then
  BEAT_SECONDS=2; CONNECT_SIZES="16 128 1024"; CONNECT_SECONDS=2; COLD=300; BENCH_REQUESTS=5000
else
  BEAT_SECONDS=10; CONNECT_SIZES="16 1024 65536"; CONNECT_SECONDS=10; COLD=10000; BENCH_REQUESTS=200000
fi

if [ -z "${SHARDMAN_BIN:-}" ] || [ -z "${SHARDMAN_LOAD_BIN:-}" ]; then
  cargo build --release --bin shardman --bin shardman-load >&2
  SHARDMAN_BIN=target/release/shardman
  SHARDMAN_LOAD_BIN=target/release/shardman-load
fi
SECRET=bench-secret
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  local port tries=0
  while [ $tries -lt 200 ]; do
    # Below Linux's ephemeral range (32768-60999), so no outgoing connection takes it meanwhile.
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
    tries=$((tries + 1))
  done
  echo "no free port" >&2; exit 1
}

wait_http() { # port
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}

start_redis() { # sets REDIS_PORT
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" >/dev/null 2>&1 &
  pids+=($!); disown $!
  for _ in $(seq 1 100); do
    redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && return
    sleep 0.05
  done
  echo "redis did not start" >&2; exit 1
}

# Replicas run from $work (no stray .env): the binary path must be absolute.
SHARDMAN_BIN=$(cd "$(dirname "$SHARDMAN_BIN")" && pwd)/$(basename "$SHARDMAN_BIN")
SHARDMAN_LOAD_BIN=$(cd "$(dirname "$SHARDMAN_LOAD_BIN")" && pwd)/$(basename "$SHARDMAN_LOAD_BIN")
start_replica() { # max_shards key_prefix max_seconds -> REPLICA_PORT, REPLICA_PID
  local port; port=$(free_port)
  (cd "$work" && exec env -i PATH="$PATH" SECRET=$SECRET REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    MAX_SHARDS="$1" KEY_PREFIX="$2" MAX_SECONDS="$3" HOST=127.0.0.1 PORT="$port" RUST_LOG=error \
    QUARANTINE_FRESH_REDIS=false \
    "$SHARDMAN_BIN" >/dev/null 2>&1) &
  local pid=$!
  pids+=($pid); disown $pid
  wait_http "$port"
  REPLICA_PORT=$port
  REPLICA_PID=$pid
}

load() { "$SHARDMAN_LOAD_BIN" --secret "$SECRET" "$@"; }

rows=()
row() { rows+=("| $1 | $2 |"); echo "  $1: $2" >&2; }

echo "== /beat through one replica vs redis-benchmark EVALSHA" >&2
start_redis
start_replica 64 bench-beat 60
beat_port=$REPLICA_PORT
# Capture the exact EVALSHA of one beat.
redis-cli -p "$REDIS_PORT" MONITOR >"$work/monitor.txt" 2>/dev/null &
monitor=$!
pids+=($monitor); disown $monitor
sleep 0.3
load --target "http://127.0.0.1:$beat_port" --processes 1 --beat-interval 0.2 --duration 0.7 \
  --keep --print /beats/acked >/dev/null
sleep 0.3
kill "$monitor" 2>/dev/null || true
# The script Redis runs is includes/common.lua followed by beat.lua (src/store/mod.rs).
beat_sha=$(cat migrations-lua/includes/common.lua migrations-lua/beat.lua | sha1sum | cut -d' ' -f1)
line=$(grep -m1 "\"EVALSHA\" \"$beat_sha\"" "$work/monitor.txt" || true)
[ -n "$line" ] || { echo "no EVALSHA of beat.lua seen in MONITOR output" >&2; exit 1; }
# MONITOR prints each argument double-quoted with C escapes; the beat's arguments hold no '$' or '`'.
eval "call=( ${line#*] } )"
shardman_rps=$(load --target "http://127.0.0.1:$beat_port" --processes 64 --beat-interval 0 \
  --duration "$BEAT_SECONDS" --concurrency 64 --print /routes/beat/per_second)
redis_rps=$(redis-benchmark -p "$REDIS_PORT" -n "$BENCH_REQUESTS" -c 64 -q "${call[@]}" \
  | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
row "/beat via one replica, beats/s" "$(printf '%.0f' "$shardman_rps")"
row "redis-benchmark EVALSHA beat, calls/s" "$(printf '%.0f' "$redis_rps")"
row "ratio (target >= 0.5)" "$(awk -v a="$shardman_rps" -v b="$redis_rps" 'BEGIN{printf "%.2f", a/b}')"

echo "== /connect p99 with nearly every shard held" >&2
p99_first=""
for size in $CONNECT_SIZES; do
  start_replica "$size" "bench-connect-$size" 3600
  p99=$(load --target "http://127.0.0.1:$REPLICA_PORT" --mode connect-latency --fill $((size - 4)) \
    --workers 4 --duration "$CONNECT_SECONDS" --concurrency 64 --print /routes/connect/latency_ms/p99)
  kill -9 "$REPLICA_PID" 2>/dev/null || true
  row "/connect p99 at MAX_SHARDS $size ($((size - 4)) held), ms" "$p99"
  [ -n "$p99_first" ] || p99_first=$p99
  p99_last=$p99
done
row "p99 ratio largest/smallest (target <= 1.5)" "$(awk -v a="$p99_last" -v b="$p99_first" 'BEGIN{printf "%.2f", a/b}')"

echo "== cold start of $COLD processes through three replicas" >&2
start_redis
ports=()
rss_pid=""
for _ in 1 2 3; do
  start_replica "$COLD" bench-cold 120
  ports+=("http://127.0.0.1:$REPLICA_PORT")
  rss_pid=${rss_pid:-$REPLICA_PID}
done
before=$(redis-cli -p "$REDIS_PORT" INFO memory | tr -d '\r' | grep '^used_memory:' | cut -d: -f2)
targets=$(IFS=,; echo "${ports[*]}")
read -r full p99 sessions distinct doubles < <(load --target "$targets" --processes "$COLD" \
  --beat-interval 5 --max-seconds 120 --duration 12 --keep --concurrency 256 --request-timeout 30 \
  --print /time_to_full_ms,/routes/connect/latency_ms/p99,/safety/sessions,/safety/distinct_shards,/safety/double_grants)
after=$(redis-cli -p "$REDIS_PORT" INFO memory | tr -d '\r' | grep '^used_memory:' | cut -d: -f2)
rss_kb=$(grep VmRSS "/proc/$rss_pid/status" | awk '{print $2}')
row "cold start: time until all $COLD hold a shard, ms" "$full"
row "cold start: /connect p99, ms" "$p99"
row "cold start: grants / distinct shards / double grants" "$sessions / $distinct / $doubles"
row "Redis bytes per held shard (target <= 300)" "$(( (after - before) / COLD ))"
row "replica RSS with $COLD shards held (one of three), MiB" "$(awk -v k="$rss_kb" 'BEGIN{printf "%.1f", k/1024}')"

{
  echo "| measure ($( $tiny && echo tiny || echo full ) run, $(nproc) cores, $(date -u +%Y-%m-%d)) | value |"
  echo "|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "${BENCH_OUT:-/dev/null}"
[ "$doubles" = "0" ] || { echo "double grants during the cold start" >&2; exit 1; }
