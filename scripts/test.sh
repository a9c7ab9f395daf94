#!/usr/bin/env bash
# Runs the whole test suite. Installs, from Debian's packages, what the tests need when it is
# missing: redis-server (every integration test starts its own), docker-compose (to validate
# docker-compose.yml), chromium (to test the status page), kubectl and promtool (to check
# deploy/). Then installs the client packages of clients/ (each only if it is there): Python
# venvs with the package and discord.py (one for each of its forks disnake, nextcord, py-cord,
# one with the oldest discord.py, one with hikari), the JS package's node_modules, the
# Rust example bot; runs each package's linters (ruff and mypy, eslint, rustfmt and clippy) and its
# own tests; and runs
# `cargo test` on every target, the clients suite (the example bots) beside the others. Reruns
# skip what is already installed. Caches stay inside the clone (target/). Extra arguments go to
# `cargo test`.
set -euo pipefail

# The discord.py forks the Python adapter is tested with, one venv each: venv:extra:module (the
# module SHARDMAN_PY_LIBRARY names; py-cord installs as `discord`).
PY_FORKS="disnake:disnake:disnake disnake-oldest:disnake:disnake nextcord:nextcord:nextcord
  pycord:pycord:discord pycord-oldest:pycord:discord"
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
# scripts/bench.sh --tiny (run by the fault suite) drives /beat with wrk.
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
# deploy/: tests/api/manifests.rs renders every Kubernetes overlay with `kubectl kustomize` and
# checks the alert rules with promtool.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# The client packages: a Python with venv and pip, Node.js with npm.
if [ -d clients/python ]; then
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
fi
if [ -d clients/js ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p target
# The service binary first: the client packages' own tests run it (cargo test reuses this build).
cargo build --bins
# The service crate must be formatted and lint-free: checked here, before the long tests, so an
# unclean tree fails at once. (rustup's default profile has both tools; a minimal one does not.)
cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 ||
  rustup component add rustfmt clippy
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# $1 is newer than the stamp $2 (or there is no stamp).
changed() { [ ! -e "$2" ] || [ -n "$(find "$1" -newer "$2" -print -quit)" ]; }

# Setup first, one step at a time (it is mostly compiling): the client packages' venvs,
# node_modules and builds, their linters, and every test binary. Then the tests, which mostly wait
# (sockets, leases, identify pacing), in three lanes side by side; each lane runs its steps in
# order into target/lanes/<lane>.log, printed when all have ended, and any failure fails the run.
if [ -d clients/python ]; then
  venv=clients/python/.venv
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  stamp="$venv/.installed"
  if changed clients/python/pyproject.toml "$stamp" ||
     { [ -e clients/python/requirements-lock.txt ] && changed clients/python/requirements-lock.txt "$stamp"; }; then
    constraints=()
    [ -e clients/python/requirements-lock.txt ] && constraints=(-c clients/python/requirements-lock.txt)
    "$venv/bin/pip" install -q --cache-dir "$PWD/target/pip-cache" "${constraints[@]}" -e 'clients/python[discord,dev]'
    touch "$stamp"
  fi
  # ruff and mypy as pyproject.toml configures them (mypy reads its file list from the package dir).
  (cd clients/python && .venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy)
  # hikari in a venv of its own (hikari 2.7 pins multidict 6, requirements-lock.txt has 7): the hikari
  # adapter's types against hikari's, its tests, and the example bot that tests/clients runs.
  hikari_venv=clients/python/.venv-hikari
  [ -x "$hikari_venv/bin/python" ] || python3 -m venv "$hikari_venv"
  stamp="$hikari_venv/.installed"
  if changed clients/python/pyproject.toml "$stamp" || changed clients/python/requirements-hikari.txt "$stamp"; then
    "$hikari_venv/bin/pip" install -q --cache-dir "$PWD/target/pip-cache" \
      -c clients/python/requirements-hikari.txt -e 'clients/python[hikari,dev]'
    touch "$stamp"
  fi
  (cd clients/python &&
    .venv-hikari/bin/mypy src/shardman_client/hikari.py tests/test_hikari.py examples/hikari_bot.py)
  # The lower ends of the package's ranges (constraints-oldest.txt: the oldest discord.py and aiohttp
  # it allows) run the same tests in a venv of their own; the main venv has the newest.
  oldest=clients/python/.venv-oldest
  [ -x "$oldest/bin/python" ] || python3 -m venv "$oldest"
  if changed clients/python/pyproject.toml "$oldest/.installed" ||
     changed clients/python/constraints-oldest.txt "$oldest/.installed"; then
    "$oldest/bin/pip" install -q --cache-dir "$PWD/target/pip-cache" \
      -c clients/python/constraints-oldest.txt -e 'clients/python[discord,dev]'
    touch "$oldest/.installed"
  fi
  # The forks of discord.py, each in a venv of its own (py-cord installs as `discord`), pinned by
  # requirements-<venv>.txt: the adapter's unit tests against each (lane packages), the example
  # bot in tests/clients (the newest of each). The oldest version a range allows where it is not
  # the newest too (nextcord's range holds one release).
  for fork in $PY_FORKS; do
    name=${fork%%:*}
    extra=$(echo "$fork" | cut -d: -f2)
    fork_venv=clients/python/.venv-$name
    [ -x "$fork_venv/bin/python" ] || python3 -m venv "$fork_venv"
    if changed clients/python/pyproject.toml "$fork_venv/.installed" ||
       changed clients/python/requirements-lock.txt "$fork_venv/.installed" ||
       changed "clients/python/requirements-$name.txt" "$fork_venv/.installed"; then
      # The test runner alone: ruff and mypy run in the main venv only.
      "$fork_venv/bin/pip" install -q --cache-dir "$PWD/target/pip-cache" \
        -c "clients/python/requirements-$name.txt" -e "clients/python[$extra]" \
        pytest pytest-asyncio pytest-timeout
      touch "$fork_venv/.installed"
    fi
  done
fi

if [ -d clients/js ]; then
  # npm ci writes node_modules/.package-lock.json; a newer package-lock.json means reinstall.
  if changed clients/js/package-lock.json clients/js/node_modules/.package-lock.json; then
    npm ci --prefix clients/js --cache "$PWD/target/npm-cache" --no-audit --no-fund
  fi
  npm run lint --prefix clients/js
fi

if [ -d clients/rust ]; then
  # One workspace (shardman-client, shardman-twilight); the example bot lands in clients/rust/target.
  cargo fmt --manifest-path clients/rust/Cargo.toml --all -- --check
  cargo clippy --manifest-path clients/rust/Cargo.toml --all-targets -- -D warnings
  cargo build --manifest-path clients/rust/Cargo.toml --example bot
  cargo test --manifest-path clients/rust/Cargo.toml --no-run
  # Each crate as a package a team installs: cargo package, warning-free docs, oldest dependencies.
  ./scripts/check-rust-packages.sh
fi

cargo test --all-targets --no-run "$@"

# The lanes. packages: each client package's own tests and install checks. suites: the service's
# unit tests and every integration suite but tests/clients, which is the third lane.
# Runs one step of a lane and goes on after a failure, so one run shows every failing step;
# the lane fails at its end (`lane_failed`).
lane_failed=0
step() {
  "$@" || {
    echo "**** failed: $*"
    lane_failed=1
  }
}
lane_packages() {
  if [ -d clients/python ]; then
    step clients/python/.venv/bin/pytest -q clients/python
    step clients/python/.venv-hikari/bin/pytest -q clients/python/tests/test_hikari.py
    step clients/python/.venv-oldest/bin/pytest -q clients/python
    for fork in $PY_FORKS; do
      step env SHARDMAN_PY_LIBRARY="${fork##*:}" "clients/python/.venv-${fork%%:*}/bin/pytest" -q \
        -p no:cacheprovider clients/python/tests/test_discordpy.py
    done
    # The wheel and the sdist a team installs, built and installed into a fresh venv.
    step scripts/check-python-package.sh
  fi
  if [ -d clients/js ]; then
    step npm test --prefix clients/js
    # The package as a team installs it: npm pack, a scratch project, tsc, the oldest peer versions.
    step ./scripts/check-js-package.sh
  fi
  if [ -d clients/rust ]; then
    step cargo test --manifest-path clients/rust/Cargo.toml
  fi
  return "$lane_failed"
}
lane_suites() {
  local targets=(--lib --bins)
  for suite in tests/*/main.rs; do
    name=$(basename "$(dirname "$suite")")
    [ "$name" = clients ] || targets+=(--test "$name")
  done
  cargo test "${targets[@]}" "$@"
}
lane_clients() {
  cargo test --test clients "$@"
}

# The client packages' tests run the service binary built above rather than building it again
# (their own fallback is a cargo build, which the lanes would do side by side).
export SHARDMAN_BIN="$PWD/target/debug/shardman"
mkdir -p target/lanes
pids=()
for lane in packages suites clients; do
  ( "lane_$lane" "$@" ) >"target/lanes/$lane.log" 2>&1 &
  pids+=("$!")
done
status=0
failed=()
for index in 0 1 2; do
  lane=(packages suites clients)
  if ! wait "${pids[$index]}"; then
    status=1
    failed+=("${lane[$index]}")
  fi
done
for lane in packages suites clients; do
  echo "---- lane $lane (target/lanes/$lane.log) ----"
  cat "target/lanes/$lane.log"
done
[ "$status" -eq 0 ] || echo "failed lanes: ${failed[*]}"
exit "$status"
