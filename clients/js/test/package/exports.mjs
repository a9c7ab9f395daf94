// Imports every export of every entry point of the installed shardman-client (scripts/check-js-package.sh).
import { readFileSync } from 'node:fs';

const manifest = JSON.parse(readFileSync(new URL('node_modules/shardman-client/package.json', import.meta.url), 'utf8'));
let count = 0;
for (const entry of Object.keys(manifest.exports)) {
  const specifier = entry === '.' ? manifest.name : `${manifest.name}/${entry.slice(2)}`;
  const module = await import(specifier);
  const names = Object.keys(module);
  if (names.length === 0) throw new Error(`${specifier} exports nothing`);
  for (const name of names) {
    if (module[name] === undefined) throw new Error(`${specifier}: ${name} is undefined`);
    count += 1;
  }
}
console.log(`imported ${count} exports of ${Object.keys(manifest.exports).length} entry points of ${manifest.name}@${manifest.version}`);
