#!/usr/bin/env bash
# The JS client as a team installs it (run by scripts/test.sh after the package's own tests):
# 1. `npm pack` builds the tarball (into target/js-package);
# 2. a scratch project installs it with the newest supported bot libraries (the versions
#    clients/js pins), imports every export of every entry point and type-checks a consumer file
#    against the shipped .d.ts (`tsc --noEmit`, strict, the libraries' types included);
# 3. a copy of the package with the oldest version of each peer dependency range runs the adapters'
#    tests (the newest are the ones `npm test` ran with).
# Installs are redone only when what they install changed. npm's cache stays in target/.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest version of each peer dependency range in clients/js/package.json (each a `^x.y.z`), and
# the Discordeno types the example bot imports at the same version as the gateway.
read -r -a oldest <<< "$(node -e '
  const { peerDependencies } = require("./clients/js/package.json");
  const low = Object.entries(peerDependencies).map(([name, range]) => [name, range.replace(/^\^/, "")]);
  low.push(["@discordeno/types", peerDependencies["@discordeno/gateway"].replace(/^\^/, "")]);
  console.log(low.map(([name, version]) => `${name}@${version}`).join(" "));')"

root="$PWD"
js="$root/clients/js"
work="$PWD/target/js-package"
npm_install=(npm install --cache "$PWD/target/npm-cache" --no-audit --no-fund --loglevel=error)
mkdir -p "$work"

# $1: a directory; $2: the text its install came from. True (and stamps it) when the stamp differs.
stale() {
  local stamp="$1/.installed"
  if [ -e "$stamp" ] && [ "$(cat "$stamp")" = "$2" ]; then return 1; fi
  rm -rf "$1/node_modules" "$1/package-lock.json" "$stamp"
  return 0
}

# 1. The tarball. npm pack writes fixed timestamps, so its hash changes only with its contents.
rm -f "$work"/shardman-client-*.tgz
tarball="$work/$(cd "$work" && npm pack --silent "$js" | tail -n 1)"
contents="$(tar -tzf "$tarball")"
for shipped in src/index.d.ts src/discordeno.d.ts examples/discordeno-bot.js README.md CHANGELOG.md; do
  [[ "$contents" == *"package/$shipped"* ]] || { echo "check-js-package: the tarball lacks $shipped" >&2; exit 1; }
done

# 2. The scratch project: the tarball and the newest libraries, as clients/js pins them.
consumer="$work/consumer"
mkdir -p "$consumer"
cp "$js"/test/package/{consumer.ts,exports.mjs,tsconfig.json} "$consumer/"
node --input-type=module - "$js/package.json" "$tarball" > "$consumer/package.json.new" <<'NODE'
import { readFileSync } from 'node:fs';
const [manifest, tarball] = process.argv.slice(2);
const { devDependencies } = JSON.parse(readFileSync(manifest, 'utf8'));
const wanted = ['@discordjs/rest', '@discordjs/ws', 'discord.js', 'discord-api-types', '@discordeno/gateway', '@discordeno/types', 'typescript', '@types/node'];
const dependencies = { 'shardman-client': `file:${tarball}` };
for (const name of wanted) dependencies[name] = devDependencies[name];
console.log(JSON.stringify({ name: 'shardman-client-consumer', private: true, type: 'module', dependencies }, null, 2));
NODE
mv "$consumer/package.json.new" "$consumer/package.json"
if stale "$consumer" "$(sha256sum "$tarball" "$consumer/package.json" | cut -d' ' -f1)"; then
  echo "check-js-package: installing the tarball into $consumer"
  (cd "$consumer" && "${npm_install[@]}")
  sha256sum "$tarball" "$consumer/package.json" | cut -d' ' -f1 > "$consumer/.installed"
fi
(cd "$consumer" && node exports.mjs && node_modules/.bin/tsc -p tsconfig.json)
echo "check-js-package: the packed tarball imports and type-checks in a scratch project"

# 3. The oldest supported libraries, under the package's own tests of the adapters.
old="$work/oldest"
mkdir -p "$old"
rm -rf "$old/src" "$old/test" "$old/examples"
cp -r "$js"/{src,test,examples,package.json} "$old/"
if stale "$old" "$(cat "$js/package.json")${oldest[*]}"; then
  echo "check-js-package: installing ${oldest[*]} into $old"
  (cd "$old" && "${npm_install[@]}" --no-save "${oldest[@]}")
  echo "$(cat "$js/package.json")${oldest[*]}" > "$old/.installed"
fi
for package in "${oldest[@]}"; do
  name="${package%@*}"
  version="$(node -p "require('$old/node_modules/$name/package.json').version")"
  [ "$version" = "${package##*@}" ] || { echo "check-js-package: $name is $version, not ${package##*@}" >&2; exit 1; }
done
(cd "$old" && SHARDMAN_BIN="${SHARDMAN_BIN:-$root/target/debug/shardman}" node --test --test-concurrency=1 test/ws.test.js test/discordjs.test.js test/discordeno.test.js)
echo "check-js-package: the adapters' tests pass with ${oldest[*]}"
