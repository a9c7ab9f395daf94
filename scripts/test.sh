#!/usr/bin/env bash
# Runs the whole test suite. Installs, from Debian's packages, what the tests need when it is
# missing: redis-server (every integration test starts its own) and docker-compose (to validate
# docker-compose.yml) and chromium (to test the status page). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# Debian's chromium: the status page is tested in a real headless browser (tests/api/dashboard.rs).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The fault suite (tests/faults) and the benchmark smoke run: Sentinel failover, redis-benchmark,
# a throwaway TLS certificate.
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --all-targets "$@"
