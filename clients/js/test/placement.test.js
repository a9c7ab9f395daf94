// Placement by load (SHARDS_PER_PROCESS=auto) with the example bot in real processes, against the real
// shardman binary and the stand-in Discord: a process runs every shard it is given, and a shard that
// placement moves is handed over and RESUMEd by the process it moves to.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startBot, until } from './support/bots.js';
import { startDiscord } from './support/discord.js';
import { startShardman } from './support/shardman.js';

let discord;
let shardman;
const bots = [];

before(async () => {
  discord = await startDiscord();
  shardman = await startShardman({
    MAX_SHARDS: '2',
    SHARDS_PER_PROCESS: 'auto',
    PLACEMENT_INTERVAL: '1',
    MOVE_SETTLE: '1',
    MAX_SECONDS: '3',
    BOT_TOKEN: discord.token,
    DISCORD_API_BASE: discord.apiBase,
  });
});
after(async () => {
  for (const child of bots) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await shardman?.stop();
  await discord?.stop();
});

const held = (child) => {
  const shards = new Set();
  for (const line of child.lines) {
    if (line.event === 'claimed') shards.add(line.shard_ids[0]);
    if (line.event === 'released') shards.delete(line.shard_ids[0]);
  }
  return [...shards].sort();
};

test('one process runs both shards; a second one gets one of them handed over, RESUMEd, and no IDENTIFY more', async (t) => {
  const first = startBot(shardman, discord);
  bots.push(first);
  await until('both shards READY at the first process', () => discord.openShards().length === 2 && held(first).length === 2);
  assert.equal(first.exitCode, null);
  const second = startBot(shardman, discord);
  bots.push(second);
  const startedAt = performance.now();
  await until('a shard moved to the second process', () => held(second).length === 1, 30_000);
  const [moved] = held(second);
  const resumed = await until('the moved shard RESUMEd', () => discord.events.find((event) => event.type === 'resumed' && event.shardId === moved), 10_000);
  t.diagnostic(`second process started -> shard ${moved} RESUMEd there: ${Math.round(resumed.time - startedAt)} ms`);
  assert.deepEqual(held(first), [1 - moved], 'the first process keeps the other shard');
  assert.ok(first.lines.some((line) => line.event === 'released' && line.reason === 'handed_over' && line.shard_ids[0] === moved), first.stderrText);
  // Handed over as on SIGTERM: closed resumable, and the RESUME names the last sequence the old connection got.
  const closed = discord.events.find((event) => event.type === 'close' && event.shardId === moved);
  assert.equal(closed.code, 4000);
  const resume = discord.events.find((event) => event.type === 'resume' && event.shardId === moved);
  assert.equal(resume.known, true);
  assert.equal(resume.seq, 2, 'READY and GUILD_CREATE: the last sequence the old connection received');
  assert.equal(discord.events.filter((event) => event.type === 'identify').length, 2, 'one IDENTIFY per shard, at the cold start only');
  assert.deepEqual(discord.openShards(), [0, 1]);

  for (const child of [first, second]) child.kill('SIGTERM');
  assert.deepEqual(await Promise.all([first.exited, second.exited]), [0, 0]);
});
