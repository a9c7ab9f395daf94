#!/usr/bin/env bash
# Checks the crates of clients/rust as packages a team installs (scripts/test.sh runs this after
# the workspace's own tests, so the normal build is already there):
#  1. `cargo package` for every crate, offline, with its verification build: each packaged crate
#     builds on its own, from what its package holds (path dependencies by version);
#  2. `cargo doc --no-deps` with rustdoc's warnings denied;
#  3. the tests that need no running shardman (unit, contract, scripted-shardman, IDENTIFY queue;
#     the example bot built) with every direct dependency at the OLDEST version its range in
#     `[workspace.dependencies]` allows (what nightly's `-Z direct-minimal-versions` would pick):
#     `cargo update --precise` on the lock file, restored on exit. The newest end is the committed
#     Cargo.lock, which the workspace's own tests use. Only the downgraded crates and what builds on
#     them are compiled again, into the same target/ (a rerun finds them built).
# A minimum that does not resolve or fails the tests fails here: raise it in clients/rust/Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/../clients/rust"

cargo package --workspace --offline --allow-dirty --quiet
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --offline --quiet

# "name@locked oldest" for each direct dependency from the registry: the lower bound of its caret
# range, padded to three numbers ("2" -> 2.0.0, "0.3" -> 0.3.0).
oldest_pairs() {
  # Only this machine's platform: the others' dependencies need not be downloaded.
  cargo metadata --format-version 1 --offline --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" |
    python3 -c '
import json, re, sys, tomllib
meta = json.load(sys.stdin)
ranges = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["dependencies"]
packages = {p["id"]: p for p in meta["packages"]}
members = set(meta["workspace_members"])
locked = {}
for node in meta["resolve"]["nodes"]:
    if node["id"] in members:
        for dep in node["deps"]:
            package = packages[dep["pkg"]]
            if package["source"] and package["name"] in ranges:
                locked[package["name"]] = package["version"]
for name, spec in sorted(ranges.items()):
    if name not in locked:
        continue  # a path dependency: it is part of this workspace
    req = spec if isinstance(spec, str) else spec["version"]
    if not re.fullmatch(r"\d+(\.\d+){0,2}", req):
        sys.exit(f"{name} = {req!r}: only plain (caret) ranges are checked here")
    oldest = ".".join((req.split(".") + ["0", "0"])[:3])
    print(f"{name}@{locked[name]} {oldest}")
'
}

pairs=$(oldest_pairs)
lock_copy=$(mktemp)
cp Cargo.lock "$lock_copy"
trap 'cp "$lock_copy" Cargo.lock; rm -f "$lock_copy"' EXIT
while read -r locked oldest; do
  [ "${locked#*@}" = "$oldest" ] && continue
  cargo update --quiet -p "$locked" --precise "$oldest" || {
    echo "${locked%@*} $oldest, the oldest clients/rust/Cargo.toml allows, does not resolve with the" \
      "other dependencies: raise its minimum to the version the error above asks for" >&2
    exit 1
  }
done <<<"$pairs"
echo "the tests with the oldest direct dependencies:" $(awk '{ sub(/@.*/, "", $1); print $1 "=" $2 }' <<<"$pairs")
cargo test --quiet -p shardman-client --lib --test contract --test core
cargo test --quiet -p shardman-twilight --lib --examples --test queue
