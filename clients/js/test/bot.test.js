// The example bot (examples/bot.js, what the harness runs) in real processes, against the real shardman
// binary and the stand-in Discord of test/support/discord.js.
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { startBot as startExampleBot, until } from './support/bots.js';
import { startDiscord } from './support/discord.js';
import { startShardman } from './support/shardman.js';

let discord;
let shardman;
const bots = [];

before(async () => {
  discord = await startDiscord();
  shardman = await startShardman({ MAX_SHARDS: '2', MAX_SECONDS: '3', BOT_TOKEN: discord.token, DISCORD_API_BASE: discord.apiBase });
});
afterEach(killLeftovers);
after(async () => {
  killLeftovers();
  await shardman?.stop();
  await discord?.stop();
});

/** Kills whatever a test left running, so a failed test does not hold shards for the next. */
function killLeftovers() {
  for (const child of bots) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

function startBot() {
  const child = startExampleBot(shardman, discord);
  bots.push(child);
  return child;
}

/** What the gateway and the bots saw, for failure messages. */
const story = () =>
  [
    ...discord.events.map((event) => `${Math.round(event.time)} ms conn ${event.connection} ${event.type} shard ${event.shardId ?? '-'}${event.early ? ' EARLY' : ''}`),
    ...bots.map((child) => `--- bot ${child.pid}:\n${child.stderrText.split('\n').filter((line) => line.startsWith('[shardman')).join('\n')}`),
  ].join('\n');

const claimedShard = (child) => child.lines.findLast((line) => line.event === 'claimed')?.shard_ids[0];

test('three example bots for two shards: both shards READY once, the killed holder\'s shard is RESUMEd by the spare, SIGTERM exits 0', async (t) => {
  const fleet = [startBot(), startBot(), startBot()];
  await until('both shards READY', () => discord.openShards().length === 2);
  const ready = discord.events.filter((event) => event.type === 'ready');
  assert.deepEqual(ready.map((event) => event.shardId).sort(), [0, 1]);
  assert.deepEqual(discord.events.filter((event) => event.early), [], `no IDENTIFY inside its bucket's 5 s\n${story()}`);
  for (const child of fleet) assert.ok(child.lines.every((line) => line.shard_count === undefined || line.shard_count === 2));

  const holder = fleet.find((child) => claimedShard(child) === 0);
  const spare = fleet.find((child) => claimedShard(child) === undefined);
  // Let a beat carry the session's resume data first.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const killedAt = performance.now();
  holder.kill('SIGKILL');
  await until('the spare to claim shard 0', () => claimedShard(spare) === 0, 15_000);
  const resumed = await until('shard 0 RESUMED', () => discord.events.find((event) => event.type === 'resumed' && event.time > killedAt), 10_000);
  assert.equal(resumed.shardId, 0);
  t.diagnostic(`kill -9 of the holder -> the spare RESUMED: ${Math.round(resumed.time - killedAt)} ms (lease 3 s)`);
  assert.equal(discord.events.filter((event) => event.type === 'ready' && event.shardId === 0).length, 1, 'shard 0 READY once: the spare resumed, it did not identify');

  const alive = fleet.filter((child) => child !== holder);
  for (const child of alive) child.kill('SIGTERM');
  const codes = await Promise.all(alive.map((child) => child.exited));
  assert.deepEqual(codes, [0, 0]);
  for (const child of alive) assert.deepEqual(child.lines.at(-1).reason, 'shutdown', child.stderrText);
  await until('the gateway to have no open shard', () => discord.openShards().length === 0, 3000);
  const status = await (await fetch(`${shardman.url}/status`, { headers: { Authorization: shardman.secret } })).json();
  assert.deepEqual(status.shards, [], 'both shards were given back');
});

test('a holder frozen past its lease loses the shard to the spare, and once woken leaves the gateway within a second', async (t) => {
  const fleet = [startBot(), startBot(), startBot()];
  await until('both shards claimed and connected', () => fleet.filter((child) => claimedShard(child) !== undefined).length === 2 && discord.openShards().length === 2);
  const holder = fleet.find((child) => claimedShard(child) === 0);
  const spare = fleet.find((child) => claimedShard(child) === undefined);
  const open = new Map();
  for (const event of discord.events) {
    if ((event.type === 'ready' || event.type === 'resumed') && event.shardId === 0) open.set(event.connection, event);
    if (event.type === 'close') open.delete(event.connection);
  }
  const [holderConnection] = [...open.keys()];
  holder.kill('SIGSTOP');
  await until('the spare to claim shard 0', () => claimedShard(spare) === 0, 15_000);
  await until('the spare on the gateway', () => discord.openShards().filter((shard) => shard === 0).length === 2, 10_000);
  const wokenAt = performance.now();
  holder.kill('SIGCONT');
  const closed = await until('the woken holder to leave the gateway', () => discord.events.find((event) => event.type === 'close' && event.connection === holderConnection), 5000);
  t.diagnostic(`woken holder left the gateway ${Math.round(closed.time - wokenAt)} ms after SIGCONT`);
  assert.ok(closed.time - wokenAt < 1000, `left ${Math.round(closed.time - wokenAt)} ms after waking`);
  await until('the woken holder to say why', () => holder.lines.some((line) => line.event === 'released' && line.reason === 'lapsed'), 3000);
  assert.deepEqual(discord.openShards(), [0, 1]);

  for (const child of fleet) child.kill('SIGTERM');
  assert.deepEqual(await Promise.all(fleet.map((child) => child.exited)), [0, 0, 0]);
});

test('a reshard 2 -> 3 ends with exactly the new generation on the gateway, and the old bots exit 0 as retired', async () => {
  const old = [startBot(), startBot()];
  await until('the old generation connected', () => discord.openShards().length === 2 && old.every((child) => claimedShard(child) !== undefined));
  const answer = await fetch(`${shardman.url}/reshard`, { method: 'POST', headers: { Authorization: shardman.secret, 'content-type': 'application/json' }, body: '{"max_shards": 3}' });
  assert.equal(answer.status, 202);
  const fresh = [startBot(), startBot(), startBot()];
  assert.deepEqual(await Promise.all(old.map((child) => child.exited)), [0, 0]);
  for (const child of old) assert.equal(child.lines.at(-1).reason, 'retired');
  await until('the new generation connected', () => discord.openShards().join() === '0,1,2', 20_000);
  const live = new Map();
  for (const event of discord.events) {
    if (event.type === 'ready' || event.type === 'resumed') live.set(event.connection, event);
    if (event.type === 'close') live.delete(event.connection);
  }
  assert.deepEqual([...live.values()].map((event) => event.shardCount), [3, 3, 3]);
  assert.deepEqual(discord.events.filter((event) => event.early), [], story());
  for (const child of fresh) child.kill('SIGTERM');
  assert.deepEqual(await Promise.all(fresh.map((child) => child.exited)), [0, 0, 0]);
});
