import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const read = (name) => readFileSync(new URL(`../${name}`, import.meta.url), 'utf8');

test('the README example is examples/bot.js word for word, so the bot the tests run is the one documented', () => {
  const blocks = [...read('README.md').matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]);
  assert.ok(blocks.length > 0);
  assert.equal(blocks[0], read('examples/bot.js'));
});
