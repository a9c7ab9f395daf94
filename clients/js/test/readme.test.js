import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

const read = (name) => readFileSync(new URL(`../${name}`, import.meta.url), 'utf8');

test('the README examples are examples/bot.js and examples/discordeno-bot.js word for word, so the bots the tests run are the ones documented', () => {
  const blocks = [...read('README.md').matchAll(/```js\n([\s\S]*?)```/g)].map((match) => match[1]);
  for (const example of ['examples/bot.js', 'examples/discordeno-bot.js']) assert.ok(blocks.includes(read(example)), `${example} is not in the README`);
});
