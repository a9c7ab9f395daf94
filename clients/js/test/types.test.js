// Every entry point's runtime exports and the values its hand-written .d.ts declares are the same names.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const packageJson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

test('each entry point exports at run time exactly the values its .d.ts declares', async () => {
  const entries = Object.entries(packageJson.exports);
  const files = entries.map(([, { types }]) => fileURLToPath(new URL(`../${types}`, import.meta.url)));
  // Only the package's own declarations: their names are what is compared, not the libraries' types.
  const program = ts.createProgram(files, { noResolve: true, noLib: true, noEmit: true });
  const checker = program.getTypeChecker();
  for (const [[entry], file] of entries.map((entry, i) => [entry, files[i]])) {
    const symbol = checker.getSymbolAtLocation(/** @type {ts.SourceFile} */ (program.getSourceFile(file)));
    const declared = checker
      .getExportsOfModule(/** @type {ts.Symbol} */ (symbol))
      .filter((exported) => (exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported).flags & ts.SymbolFlags.Value)
      .map((exported) => exported.name)
      .sort();
    const specifier = entry === '.' ? packageJson.name : `${packageJson.name}/${entry.slice(2)}`;
    const actual = Object.keys(await import(specifier)).sort();
    assert.deepEqual(actual, declared, `${specifier}: run-time exports vs ${packageJson.exports[entry].types}`);
  }
});
