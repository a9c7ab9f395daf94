// The discord.js 14 adapter with the real discord.js, against the real shardman and the stand-in Discord.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { GatewayIntentBits } from 'discord.js';
import { ShardmanClient, runShards } from 'shardman-client';
import { startDiscordjsShards } from 'shardman-client/discordjs';
import { startDiscord } from './support/discord.js';
import { connectAnswer, startFakeShardman, usualAnswer } from './support/fake-shardman.js';
import { startShardman } from './support/shardman.js';

let discord;
let shardman;

before(async () => {
  discord = await startDiscord({ maxConcurrency: 2 });
  shardman = await startShardman({ MAX_SHARDS: '2', SHARDS_PER_PROCESS: '2', MAX_SECONDS: '3', BOT_TOKEN: discord.token, DISCORD_API_BASE: discord.apiBase });
});
after(async () => {
  await shardman?.stop();
  await discord?.stop();
});

test('a discord.js client runs a claimed group at the claim\'s gateway, and its sessions reach the next claim', async () => {
  const client = new ShardmanClient({ url: shardman.url, secret: shardman.secret });
  const controller = new AbortController();
  const changes = [];
  /** @type {import('discord.js').Client} */
  let djs;
  const run = runShards({
    client,
    signal: controller.signal,
    log: () => {},
    onClaimChange: (change) => changes.push(change),
    start: (context) =>
      startDiscordjsShards(context, {
        token: discord.token,
        discordApiBase: discord.apiBase,
        options: { intents: [GatewayIntentBits.Guilds] },
        onClient: (created) => (djs = created),
      }),
  });
  const end = performance.now() + 20_000;
  while (!(djs?.isReady() && discord.openShards().length === 2) && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(djs.isReady(), 'discord.js emitted ready');
  assert.deepEqual(discord.openShards(), [0, 1]);
  // Two buckets (max_concurrency 2): both permits come at once, in either order.
  const identifies = discord.events.filter((event) => event.type === 'identify').map((event) => [event.shardId, event.shardCount, event.early]);
  assert.deepEqual(identifies.sort(), [[0, 2, false], [1, 2, false]]);
  assert.equal(djs.guilds.cache.size, 2);
  // By shard id, as the next claim's resumes are (the two READYs come in either order).
  const sessions = discord.events.filter((event) => event.type === 'ready').sort((a, b) => a.shardId - b.shardId).map((event) => event.sessionId);
  // A beat or two with the sessions' resume data, then a graceful stop.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  controller.abort();
  assert.equal(await run, 'shutdown');
  assert.deepEqual(changes.map((change) => [change.event, change.shard_ids, change.reason]), [['claimed', [0, 1], undefined], ['released', [0, 1], 'shutdown']]);
  assert.deepEqual(discord.openShards(), []);
  assert.deepEqual(discord.events.filter((event) => event.type === 'close').map((event) => event.code), [4000, 4000], 'closed resumable');

  const next = await client.connect();
  assert.deepEqual(next.resumes.map((resume) => resume?.sessionId), sessions);
  await client.disconnect(next.sessionId);
});

test('shards placed by load are refused: discord.js cannot RESUME a handed-over shard; the claim is given back', async () => {
  // One shard to give; a later /connect waits for one.
  const fake = await startFakeShardman((request) => {
    if (request.path !== '/connect') return usualAnswer(request);
    if (request.count > 1) return { status: 401, body: { detail: 'No Shards Available' }, delay: 5000 };
    return { status: 200, body: connectAnswer({ shardIds: [3], shardCount: 8, leaseSeconds: 3, placement: 'load' }) };
  });
  try {
    const changes = [];
    const run = runShards({
      client: new ShardmanClient({ url: fake.url, secret: 's' }),
      log: () => {},
      onClaimChange: (change) => changes.push(change),
      start: (context) => startDiscordjsShards(context, { token: discord.token, options: { intents: [GatewayIntentBits.Guilds] } }),
    });
    await assert.rejects(run, /cannot RESUME a handed-over shard/);
    assert.deepEqual(changes.map((change) => change.reason ?? change.event), ['claimed', 'failed']);
    assert.deepEqual(fake.requests.filter((request) => request.path !== '/connect').slice(-2).map((request) => request.path), ['/beat', '/disconnect']);
  } finally {
    await fake.stop();
  }
});
