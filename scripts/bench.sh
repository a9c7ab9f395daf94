#!/usr/bin/env bash
# Benchmarks shardman on this machine, side by side in one run, and prints a Markdown table
# (results go in BENCHMARKS.md). Not a test: numbers depend on the machine.
#
#   scripts/bench.sh           full size (release build; a few minutes)
#   scripts/bench.sh --tiny    tiny size: checks that the script still works (CI runs this)
#   scripts/bench.sh --beat    only part 1 (the /beat throughput), full size
#   scripts/bench.sh --pacing  only the IDENTIFY pacing of the example bots at cold start
#                              (tests/clients/pacing.rs; PACING_BOTS, PACING_CASES, PACING_REPEAT;
#                              the bots installed as scripts/test.sh installs them)
#
# Measures:
#   1. /beat throughput through one replica vs redis-benchmark running the single-beat script
#      (EVALSHA, the exact call the replica makes for a lone beat, captured with MONITOR) on the
#      same Redis; p99 at that load; the same load on the embedded store; CPU per beat of the
#      replica and of Redis; Redis commands per beat (INFO commandstats);
#   2. /connect p99 with MAX_SHARDS 16, 1,024 and 65,536, all but 4 shards held;
#   3. a cold start of N processes connecting at once through three replicas;
#   4. Redis bytes per held shard and one replica's RSS with N shards held.
# Env: SHARDMAN_BIN / SHARDMAN_LOAD_BIN use prebuilt binaries; BENCH_OUT also writes the table there.
# Needs redis-server, redis-cli, redis-benchmark (Debian: redis-server, redis-tools), curl, bc;
# the beat load comes from wrk when installed (Debian: wrk), else from shardman-load.
set -euo pipefail
cd "$(dirname "$0")/.."

tiny=false; beat_only=false
if [ "${1:-}" = "--pacing" ]; then
  exec cargo test --test clients -- --ignored --nocapture --test-threads 1 cold_starts_are_paced_at_discords_rate
fi
[ "${1:-}" = "--tiny" ] && tiny=true
[ "${1:-}" = "--beat" ] && beat_only=true
if $tiny; then
  ROUNDS=1; BEAT_SECONDS=2; CONNECT_SIZES="16 128 1024"; CONNECT_SECONDS=2; COLD=300
  BENCH_REQUESTS=5000
else
  ROUNDS=3; BEAT_SECONDS=5; CONNECT_SIZES="16 1024 65536"; CONNECT_SECONDS=10; COLD=10000
  BENCH_REQUESTS=100000
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
start_replica() { # max_shards key_prefix max_seconds [max_concurrency] -> REPLICA_PORT, REPLICA_PID
  local port; port=$(free_port)
  (cd "$work" && exec env -i PATH="$PATH" SECRET=$SECRET REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    MAX_SHARDS="$1" KEY_PREFIX="$2" MAX_SECONDS="$3" MAX_CONCURRENCY="${4:-1}" HOST=127.0.0.1 \
    PORT="$port" RUST_LOG=error QUARANTINE_FRESH_REDIS=false \
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
beat_redis_port=$REDIS_PORT
# An IDENTIFY bucket per session (MAX_CONCURRENCY 64 for the 64 sessions below), so every
# session's slot is now and its beats take the path of a running fleet's, not that of a bot still
# waiting minutes for its slot.
start_replica 128 bench-beat 60 64
beat_port=$REPLICA_PORT
beat_pid=$REPLICA_PID
# Capture the exact EVALSHA of one beat (a lone beat is a batch of one).
redis-cli -p "$REDIS_PORT" MONITOR >"$work/monitor.txt" 2>/dev/null &
monitor=$!
pids+=($monitor); disown $monitor
sleep 0.3
load --target "http://127.0.0.1:$beat_port" --processes 1 --beat-interval 0.2 --duration 0.7 \
  --keep --print /beats/acked >/dev/null
sleep 0.3
kill "$monitor" 2>/dev/null || true
# The script Redis runs is includes/common.lua followed by beat.lua (src/store/scripts/mod.rs).
beat_sha=$(cat migrations-lua/includes/common.lua migrations-lua/beat.lua | sha1sum | cut -d' ' -f1)
line=$(grep -m1 "\"EVALSHA\" \"$beat_sha\"" "$work/monitor.txt" || true)
[ -n "$line" ] || { echo "no EVALSHA of beat.lua seen in MONITOR output" >&2; exit 1; }
# MONITOR prints each argument double-quoted with C escapes; the beat's arguments hold no '$' or '`'.
eval "call=( ${line#*] } )"
redis_pid=$(redis-cli -p "$REDIS_PORT" INFO server | tr -d '\r' | grep '^process_id:' | cut -d: -f2)

# CPU time (user + system) of a process so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# 64 sessions to beat with (shardman-load keeps none it could hand over: claim them with curl).
claim_sessions() { # port file
  : >"$2"
  for _ in $(seq 1 64); do
    curl -s -H "Authorization: $SECRET" "http://127.0.0.1:$1/connect" \
      | grep -o '"session_id":"[^"]*"' | cut -d'"' -f4 >>"$2"
  done
  [ "$(wc -l <"$2")" -eq 64 ] || { echo "could not claim 64 sessions on port $1" >&2; exit 1; }
}

# Beats back to back for BEAT_SECONDS through the replica on port $1 (sessions in $2), from
# wrk (light on the shared CPU) or, without it, shardman-load. Sets BEATS_PER_SECOND,
# BEAT_P99_MS, BEATS (count) and BEAT_ERRORS.
# The requests are formatted once, in init(), as wrk's documentation advises for a fast server:
# formatting each one in request() costs the shared CPU more than the replica spends on it.
cat >"$work/beat.lua" <<'LUA'
local requests, next_request = {}, 0
function init(args)
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", "/beat", {
      ["Authorization"] = args_secret,
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, "session_id=" .. line .. "&guild_count=1200&latency=0.041" .. (args[2] or ""))
  end
  next_request = math.random(#requests)
end
function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
LUA
sed -i "1i args_secret = '$SECRET'" "$work/beat.lua"
# What a bot's beat also reports for scaling on load (README "Scaling on load"): the counters stay
# put here, so after its first report a beat's rates change nothing (as for a retried beat). Only
# wrk sends them; without it both runs are the same bare beats.
LOAD_REPORTS="&events=48213&cpu_seconds=412.7&rss_bytes=187695104&process=bench-host:4242"
run_beats() { # port sessions-file [extra body fields]
  if command -v wrk >/dev/null 2>&1; then
    wrk -t1 -c32 -d"${BEAT_SECONDS}s" --latency -s "$work/beat.lua" "http://127.0.0.1:$1" -- "$2" \
      "${3:-}" >"$work/wrk.txt" 2>&1
    BEATS=$(grep -o '[0-9]* requests in' "$work/wrk.txt" | cut -d' ' -f1)
    BEATS_PER_SECOND=$(grep '^Requests/sec:' "$work/wrk.txt" | awk '{print $2}')
    BEAT_P99_MS=$(awk '$1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000}
      else if (v ~ /ms$/) sub(/ms$/, "", v); else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000};
      printf "%.2f", v}' "$work/wrk.txt")
    BEAT_ERRORS=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$work/wrk.txt" | awk '{print $NF}' || true)
    BEAT_ERRORS=$(( ${BEAT_ERRORS:-0} + $(grep -o 'Socket errors:.*' "$work/wrk.txt" \
      | grep -o '[0-9]\+' | paste -sd+ | bc 2>/dev/null || echo 0) ))
  else
    read -r BEATS_PER_SECOND BEAT_P99_MS BEATS < <(load --target "http://127.0.0.1:$1" \
      --processes 64 --beat-interval 0 --duration "$BEAT_SECONDS" --concurrency 32 \
      --print /routes/beat/per_second,/routes/beat/latency_ms/p99,/routes/beat/count)
    BEAT_ERRORS=0
  fi
}

claim_sessions "$beat_port" "$work/sessions.txt"
# Rounds of /beat load and redis-benchmark alternate, so both see the same machine (other work on
# the shared cores moves both); the ratio is the median of the rounds'.
ratios=(); p99s=(); rps_all=(); redis_all=(); reported_all=(); report_ratios=()
beats=0; beat_errors=0; replica_ticks=0; redis_ticks=0
redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
for _ in $(seq 1 "$ROUNDS"); do
  replica_before=$(cpu_ticks "$beat_pid"); redis_before=$(cpu_ticks "$redis_pid")
  run_beats "$beat_port" "$work/sessions.txt"
  replica_after=$(cpu_ticks "$beat_pid"); redis_after=$(cpu_ticks "$redis_pid")
  replica_ticks=$((replica_ticks + replica_after - replica_before))
  redis_ticks=$((redis_ticks + redis_after - redis_before))
  beats=$((beats + BEATS)); beat_errors=$((beat_errors + BEAT_ERRORS)); round_beats=$BEATS
  redis_calls=$(redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' \
    | grep -o 'calls=[0-9]*' | cut -d= -f2 | paste -sd+ | bc)
  script_calls=$(redis-cli -p "$REDIS_PORT" INFO commandstats | tr -d '\r' \
    | grep -E '^cmdstat_(evalsha|eval):' | grep -o 'calls=[0-9]*' | cut -d= -f2 | paste -sd+ | bc)
  redis_rps=$(redis-benchmark -p "$REDIS_PORT" -n "$BENCH_REQUESTS" -c 32 -q "${call[@]}" \
    | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
  redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
  ratios+=("$(awk -v a="$BEATS_PER_SECOND" -v b="$redis_rps" 'BEGIN{printf "%.3f", a/b}')")
  p99s+=("$BEAT_P99_MS"); rps_all+=("$BEATS_PER_SECOND"); redis_all+=("$redis_rps")
  bare_rps=$BEATS_PER_SECOND
  # The same beats with the load reports, in the same round: their cost on the beat path.
  run_beats "$beat_port" "$work/sessions.txt" "$LOAD_REPORTS"
  redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null  # the next round counts its own calls
  reported_all+=("$BEATS_PER_SECOND")
  report_ratios+=("$(awk -v a="$BEATS_PER_SECOND" -v b="$bare_rps" 'BEGIN{printf "%.3f", a/b}')")
  echo "  round: /beat $bare_rps/s (p99 $BEAT_P99_MS ms), with load reports $BEATS_PER_SECOND/s, redis-benchmark $redis_rps/s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
shardman_rps=$(median "${rps_all[@]}"); redis_rps=$(median "${redis_all[@]}")
beat_p99=$(median "${p99s[@]}"); ratio=$(median "${ratios[@]}")
per_beat_us() { awk -v t="$1" -v hz="$ticks_per_second" -v n="$beats" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}'; }

# The same load on the embedded store (no REDIS_URL).
port=$(free_port)
(cd "$work" && exec env -i PATH="$PATH" SECRET=$SECRET MAX_SHARDS=64 MAX_SECONDS=60 MAX_CONCURRENCY=64 HOST=127.0.0.1 \
  PORT="$port" RUST_LOG=error "$SHARDMAN_BIN" >/dev/null 2>&1) &
embedded_pid=$!
pids+=($embedded_pid); disown $embedded_pid
wait_http "$port"
claim_sessions "$port" "$work/embedded-sessions.txt"
embedded_before=$(cpu_ticks "$embedded_pid")
run_beats "$port" "$work/embedded-sessions.txt"
embedded_after=$(cpu_ticks "$embedded_pid")
embedded_rps=$BEATS_PER_SECOND; embedded_p99=$BEAT_P99_MS
embedded_cpu=$(awk -v t="$((embedded_after - embedded_before))" -v hz="$ticks_per_second" \
  -v n="$BEATS" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}')
kill -9 "$embedded_pid" 2>/dev/null || true

row "/beat via one replica (Redis), beats/s (median of $ROUNDS rounds)" "$(printf '%.0f' "$shardman_rps")"
row "redis-benchmark EVALSHA of the single-beat call, calls/s (median)" "$(printf '%.0f' "$redis_rps")"
row "ratio replica / redis-benchmark, median of the rounds' (goal >= 1.0)" "$(printf '%.2f' "$ratio") (rounds: ${ratios[*]})"
row "/beat p99 at that load, ms (goal <= 5)" "$beat_p99"
row "/beat with the load reports (events, cpu_seconds, rss_bytes, process), beats/s (median)" "$(printf '%.0f' "$(median "${reported_all[@]}")")"
row "ratio with / without the load reports, median of the rounds'" "$(median "${report_ratios[@]}") (rounds: ${report_ratios[*]})"
row "/beat answers other than 204 (Redis)" "$beat_errors"
row "/beat via the embedded store, beats/s" "$(printf '%.0f' "$embedded_rps")"
row "ratio embedded / Redis (goal >= 1.0)" "$(awk -v a="$embedded_rps" -v b="$shardman_rps" 'BEGIN{printf "%.2f", a/b}')"
row "/beat p99 on the embedded store, ms" "$embedded_p99"
row "replica CPU per beat (Redis mode), µs" "$(per_beat_us "$replica_ticks")"
row "Redis CPU per beat, µs" "$(per_beat_us "$redis_ticks")"
row "embedded replica CPU per beat, µs" "$embedded_cpu"
row "Redis commands per beat, last round (INFO commandstats; script calls per beat)" "$(awk -v c="$redis_calls" -v s="${script_calls:-0}" -v n="$round_beats" 'BEGIN{printf "%.2f (%.3f)", c/n, s/n}')"

print_table() {
  {
    echo "| measure ($( $tiny && echo tiny || echo full ) run, $(nproc) cores, $(date -u +%Y-%m-%d)) | value |"
    echo "|---|---|"
    printf '%s\n' "${rows[@]}"
  } | tee "${BENCH_OUT:-/dev/null}"
}
if $beat_only; then print_table; exit 0; fi

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

print_table
[ "$doubles" = "0" ] || { echo "double grants during the cold start" >&2; exit 1; }
