#!/usr/bin/env bash
# Runs the fault suite (tests/faults: real redis-server, three shardman replicas, shardman-load) and
# prints its results as a Markdown table for BENCHMARKS.md.
#
#   scripts/faults.sh                  CI scale (8 processes, MAX_SECONDS=3)
#   FAULT_SCALE=4 scripts/faults.sh    4x the processes and shards
#   scripts/faults.sh --include-ignored   also the scenarios still marked as known failures
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf target/fault-results
status=0
cargo test --test faults -- --test-threads=1 "$@" || status=$?
echo
echo "| scenario (scale ${FAULT_SCALE:-1}) | double grants | fence regressions | lost acked beats | failed requests | clients' leases expired | recovery after fault | max beat latency |"
echo "|---|---|---|---|---|---|---|---|"
for result in target/fault-results/*.json; do
  [ -e "$result" ] || continue
  sed -E 's/.*"scenario":"([^"]*)","double_grants":([0-9]+),"fence_regressions":([0-9]+),"lost_acknowledged_beats":([0-9]+),"failed_requests":([0-9]+),"expired_in_client_view":([0-9]+),"recovery_ms":([0-9]+|null),"max_beat_latency_ms":([0-9.]+).*/| \1 | \2 | \3 | \4 | \5 | \6 | \7 ms | \8 ms |/' "$result"
  echo
done
exit $status
