#!/usr/bin/env bash
# Checks the Python package a team installs, not the checkout: builds clients/python's wheel and sdist
# with `python -m build` (into target/python-dist, not the source tree), installs the wheel (with the
# `discord` extra) into a fresh venv and then the sdist in its place, and after each install imports
# every module of the installed copy, finds its py.typed and imports the adapter as a bot does; a bot's
# code is type-checked against the installed wheel.
# Needs clients/python/.venv (scripts/test.sh makes it; `build` is in its dev extra).
set -euo pipefail
cd "$(dirname "$0")/.."

package=clients/python
dist=target/python-dist
venv=target/python-package-venv
# build's isolated environment (it installs the build backend) shares the pip cache in target/.
export PIP_CACHE_DIR="$PWD/target/pip-cache"

rm -rf "$dist"
mkdir -p "$dist"
"$package/.venv/bin/python" -m build --outdir "$dist" "$package" >"$dist/build.log" 2>&1 || {
  cat "$dist/build.log" >&2
  exit 1
}
wheels=("$dist"/shardman_client-*.whl)
sdists=("$dist"/shardman_client-*.tar.gz)
[ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] && [ "${#sdists[@]}" -eq 1 ] && [ -f "${sdists[0]}" ] || {
  echo "python -m build made no single wheel and sdist: $(ls "$dist")" >&2
  exit 1
}

# The modules the checkout has: the installed copy must have each of them.
modules=$(cd "$package/src" && find shardman_client -name '*.py' | sed 's/\.py$//; s/\/__init__$//; s/\//./g' | sort)

smoke() {
  # From the venv's own folder, so that nothing resolves from the checkout.
  (cd "$venv" && bin/python - "$1" $modules <<'EOF'
import importlib
import pkgutil
import sys
from pathlib import Path

import shardman_client

artifact, expected = sys.argv[1], sorted(sys.argv[2:])
root = Path(shardman_client.__file__).resolve().parent
assert root.is_relative_to(Path(sys.prefix).resolve()), f"{artifact}: imported {root}, not the installed copy"
found = sorted(
    ["shardman_client"]
    + [m.name for m in pkgutil.walk_packages(shardman_client.__path__, "shardman_client.")]
)
assert found == expected, f"{artifact}: installed modules {found}, the checkout has {expected}"
# An adapter for a library the `discord` extra does not install (hikari) imports once that library
# is there: it must fail on that library's import and nothing else.
OTHER_LIBRARIES = {"shardman_client.hikari": "hikari"}
for name in found:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as missing:
        if missing.name != OTHER_LIBRARIES.get(name):
            raise
assert (root / "py.typed").is_file(), f"{artifact}: no py.typed installed"
print(f"{artifact}: {len(found)} modules import, py.typed present")
EOF
  ) &&
  # The adapter's import as a bot writes it, with the discord.py the extra installed.
  (cd "$venv" && bin/python -c 'import discord; from shardman_client import ShardmanClient; from shardman_client.discordpy import run_bot; print("discord.py", discord.__version__)')
}

# A venv without pip of its own (ensurepip is most of a venv's making): the dev venv's pip installs into it.
python3 -m venv --clear --without-pip "$venv"
pip=("$package/.venv/bin/pip" --python "$venv/bin/python")
"${pip[@]}" install -q -c "$package/requirements-lock.txt" "shardman-client[discord] @ file://$PWD/${wheels[0]}"
smoke "$(basename "${wheels[0]}")"
# A bot's own code, type-checked (mypy --strict, the dev venv's) against the installed copy: its py.typed
# makes the package's types visible, where without it mypy reports the import as untyped.
cat >"$venv/consumer.py" <<'EOF'
import discord

from shardman_client import Release, ShardmanClient, discordpy


class Bot(discord.AutoShardedClient):
    def __init__(self, *, shard_ids: list[int], shard_count: int) -> None:
        super().__init__(intents=discord.Intents.default(), shard_ids=shard_ids, shard_count=shard_count)


async def main(url: str, secret: str, token: str) -> Release:
    async with ShardmanClient(url, secret) as shardman:
        return await discordpy.run_bot(Bot, shardman=shardman, token=token)
EOF
mypy=$PWD/$package/.venv/bin/mypy
(cd "$venv" && "$mypy" --strict --no-incremental --python-executable bin/python consumer.py)
# The sdist in the wheel's place: pip builds it (with the backend from PyPI) and installs that.
"${pip[@]}" uninstall -q -y shardman-client
"${pip[@]}" install -q --no-deps "$PWD/${sdists[0]}"
"${pip[@]}" check >/dev/null
smoke "$(basename "${sdists[0]}")"
