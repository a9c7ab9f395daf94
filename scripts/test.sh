#!/usr/bin/env bash
# Runs the whole test suite. Installs, from Debian's packages, what the tests need when it is
# missing: redis-server (every integration test starts its own) and docker-compose (to validate
# docker-compose.yml) and chromium (to test the status page). Then installs the client packages
# of clients/ (each only if it is there): a Python venv with the package and discord.py (and one
# for each of its forks disnake, nextcord, py-cord), the JS
# package's node_modules, the Rust example bot; runs each package's linters (ruff and mypy, eslint,
# rustfmt and clippy) and its own tests; and runs
# `cargo test --all-targets`, whose tests/clients runs the three example bots. Reruns skip what
# is already installed. Caches stay inside the clone (target/). Extra arguments go to `cargo test`.
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
# scripts/bench.sh --tiny (run by the fault suite) drives /beat with wrk.
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
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
  "$venv/bin/pytest" -q clients/python
  # The forks of discord.py, each in a venv of its own (py-cord installs as `discord`), pinned by
  # requirements-<fork>.txt: the adapter's unit tests against each here, the example bot in
  # tests/clients. Each entry: venv and extra name, then the module SHARDMAN_PY_LIBRARY names.
  for fork in disnake:disnake nextcord:nextcord pycord:discord; do
    name=${fork%%:*}
    fork_venv=clients/python/.venv-$name
    [ -x "$fork_venv/bin/python" ] || python3 -m venv "$fork_venv"
    if changed clients/python/pyproject.toml "$fork_venv/.installed" ||
       changed clients/python/requirements-lock.txt "$fork_venv/.installed" ||
       changed "clients/python/requirements-$name.txt" "$fork_venv/.installed"; then
      # The test runner alone: ruff and mypy run in the main venv only.
      "$fork_venv/bin/pip" install -q --cache-dir "$PWD/target/pip-cache" \
        -c "clients/python/requirements-$name.txt" -e "clients/python[$name]" \
        pytest pytest-asyncio pytest-timeout
      touch "$fork_venv/.installed"
    fi
    SHARDMAN_PY_LIBRARY=${fork#*:} "$fork_venv/bin/pytest" -q -p no:cacheprovider \
      clients/python/tests/test_discordpy.py
  done
fi

if [ -d clients/js ]; then
  # npm ci writes node_modules/.package-lock.json; a newer package-lock.json means reinstall.
  if changed clients/js/package-lock.json clients/js/node_modules/.package-lock.json; then
    npm ci --prefix clients/js --cache "$PWD/target/npm-cache" --no-audit --no-fund
  fi
  npm run lint --prefix clients/js
  npm test --prefix clients/js
fi

if [ -d clients/rust ]; then
  # One workspace (shardman-client, shardman-twilight); the example bot lands in clients/rust/target.
  cargo fmt --manifest-path clients/rust/Cargo.toml --all -- --check
  cargo clippy --manifest-path clients/rust/Cargo.toml --all-targets -- -D warnings
  cargo build --manifest-path clients/rust/Cargo.toml --example bot
  cargo test --manifest-path clients/rust/Cargo.toml
fi

cargo test --all-targets "$@"
