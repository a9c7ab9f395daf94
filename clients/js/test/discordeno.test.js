// The Discordeno adapter in-process: a scripted shardman, the package's stand-in Discord.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { ShardmanClient, runShards } from 'shardman-client';
import { startDiscordenoShards } from 'shardman-client/discordeno';
import { startDiscord } from './support/discord.js';
import { connectAnswer, startFakeShardman, usualAnswer } from './support/fake-shardman.js';

const cleanup = [];
after(() => Promise.all(cleanup.map((stop) => stop())));

async function until(condition, ms = 10_000) {
  const end = performance.now() + ms;
  while (!condition() && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 20));
  assert.ok(condition(), 'timed out');
}

/** A stand-in Discord and a scripted shardman (`script` answers first, `usualAnswer` otherwise), each stopped after the tests. */
async function deployment(script = () => undefined, discordOptions = {}) {
  // Not the stand-in's usual 1 s heartbeat: Discordeno sizes a connection's send budget as
  // 120 - 2 * (60 s / heartbeat interval), which is 0 at 1 s and stalls its send queue in a busy loop.
  const discord = await startDiscord({ heartbeatInterval: 2000, ...discordOptions });
  cleanup.push(() => discord.stop());
  const shardman = await startFakeShardman((request) => script(request, discord) ?? usualAnswer(request));
  cleanup.push(() => shardman.stop());
  return { discord, shardman, client: new ShardmanClient({ url: shardman.url, secret: 's' }) };
}

test('without a gateway_url the shards find the gateway at DISCORD_API_BASE; permit, IDENTIFY, READY, confirm; beats carry the session; a shutdown closes 4000 and hands over the last sequence received', async () => {
  const { discord, shardman, client } = await deployment((request) =>
    request.path === '/connect' ? { status: 200, body: connectAnswer({ shardIds: [0, 1], shardCount: 2, leaseSeconds: 1.5 }) } : undefined,
    // Two buckets: the scripted shardman grants both permits at once.
    { maxConcurrency: 2 },
  );
  const controller = new AbortController();
  const payloads = [];
  const run = runShards({
    client,
    signal: controller.signal,
    log: () => {},
    start: (context) =>
      startDiscordenoShards(context, {
        token: discord.token,
        intents: 1,
        discordApiBase: discord.apiBase,
        events: { message: (shard, payload) => payload.t && payloads.push([shard.id, payload.t]) },
      }),
  });
  const beatWithSessions = () =>
    shardman.requests.find((request) => request.path === '/beat' && request.body.shards.every((shard) => shard.resume && shard.latency != null));
  await until(beatWithSessions);
  controller.abort();
  assert.equal(await run, 'shutdown');

  const readies = discord.events.filter((event) => event.type === 'ready');
  assert.deepEqual(readies.map((ready) => ready.shardId).sort(), [0, 1]);
  assert.ok(readies.every((ready) => ready.path === '/?v=10&encoding=json'), 'connected at the REST-given gateway, uncompressed');
  for (const ready of readies) {
    const identify = discord.events.find((event) => event.type === 'identify' && event.shardId === ready.shardId);
    const permit = shardman.requests.find((request) => request.path === '/identify/permit' && request.body.shard_id === ready.shardId);
    const confirm = shardman.requests.find((request) => request.path === '/identify/confirm' && request.body.shard_id === ready.shardId);
    assert.ok(permit.time < identify.time && ready.time < confirm.time, `shard ${ready.shardId}: permit, IDENTIFY, READY, confirm in this order`);
  }
  const beat = beatWithSessions().body;
  for (const shard of beat.shards) {
    const ready = readies.find((event) => event.shardId === shard.shard_id);
    assert.deepEqual(shard.resume, { session_id: ready.sessionId, sequence: 2, resume_gateway_url: `${discord.gatewayUrl}/resume` });
    assert.equal(shard.events, 2);
    assert.equal(shard.guild_count, 1);
  }
  assert.deepEqual(payloads.filter(([shardId]) => shardId === 0).map(([, t]) => t), ['READY', 'GUILD_CREATE'], 'the bot\'s message handler saw the dispatches');
  // Closed resumable, then the last beat names what each shard received, then /disconnect.
  assert.deepEqual(discord.events.filter((event) => event.type === 'close').map((event) => event.code), [4000, 4000]);
  const [last, disconnect] = shardman.requests.slice(-2);
  assert.equal(disconnect.path, '/disconnect');
  assert.deepEqual(last.body.shards.map((shard) => shard.resume.sequence), [2, 2]);
});

test('a claim with inherited resume data RESUMEs at its sequence without an IDENTIFY; a beat\'s reconnect RESUMEs it again', async () => {
  let sessionId = null;
  const { discord, shardman, client } = await deployment((request, stand) => {
    if (request.path === '/connect' && request.count === 1) {
      return { status: 200, body: connectAnswer({ sessionId: 'first', shardIds: [0], shardCount: 1, leaseSeconds: 3, gatewayUrl: stand.gatewayUrl }) };
    }
    if (request.path === '/connect') {
      const resume = { session_id: sessionId, sequence: 2, resume_gateway_url: `${stand.gatewayUrl}/resume` };
      return { status: 200, body: connectAnswer({ sessionId: 'second', shardIds: [0], shardCount: 1, leaseSeconds: 3, gatewayUrl: stand.gatewayUrl, resumes: [resume] }) };
    }
    // The second claim's first beat once it has resumed asks to reconnect the shard.
    if (request.path === '/beat' && request.body.session_id === 'second' && request.body.resume && !shardman.asked) {
      shardman.asked = true;
      return { status: 200, body: { shard_id: 0, max_shards: 1, generation: 1, state: 'active', fence: 7, reconnect: [0] } };
    }
    return undefined;
  });
  const start = (context) => startDiscordenoShards(context, { token: discord.token, intents: 1 });
  // A first process identifies and gives the shard back.
  const first = new AbortController();
  const firstRun = runShards({ client, signal: first.signal, log: () => {}, start });
  await until(() => discord.events.some((event) => event.type === 'ready'));
  sessionId = discord.events.find((event) => event.type === 'ready').sessionId;
  first.abort();
  await firstRun;
  // The next holder resumes it.
  const second = new AbortController();
  const secondRun = runShards({ client, signal: second.signal, log: () => {}, start });
  await until(() => discord.events.filter((event) => event.type === 'resumed').length === 2);
  second.abort();
  assert.equal(await secondRun, 'shutdown');
  assert.deepEqual(
    discord.events.filter((event) => event.type !== 'open').map((event) => [event.type, event.seq ?? event.code ?? null]),
    [['identify', null], ['ready', null], ['close', 4000], ['resume', 2], ['resumed', null], ['close', 3024], ['resume', 3], ['resumed', null], ['close', 4000]],
  );
  assert.equal(shardman.requests.filter((request) => request.path === '/identify/permit').length, 1, 'only the first IDENTIFY asked a permit');
});

test('shards released while waiting for READY do not come back to the gateway', async () => {
  const { discord, client } = await deployment(
    (request, stand) => (request.path === '/connect' ? { status: 200, body: connectAnswer({ shardIds: [0], shardCount: 1, leaseSeconds: 3, gatewayUrl: stand.gatewayUrl }) } : undefined),
    { answerIdentify: false },
  );
  const controller = new AbortController();
  const run = runShards({ client, signal: controller.signal, log: () => {}, start: (context) => startDiscordenoShards(context, { token: discord.token, intents: 1 }) });
  await until(() => discord.events.some((event) => event.type === 'identify'));
  controller.abort();
  assert.equal(await run, 'shutdown');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.deepEqual(discord.events.map((event) => event.type), ['open', 'identify', 'close']);
});

test('a lapsed lease closes the shards at once, and a shard Discord refuses for good (4004) releases its claim as failed', async () => {
  const { discord, shardman, client } = await deployment((request, stand) => {
    if (request.path === '/connect') return { status: 200, body: connectAnswer({ shardIds: [0], shardCount: 1, leaseSeconds: 1, gatewayUrl: stand.gatewayUrl }) };
    // No beat is ever answered: the lease view runs out.
    if (request.path === '/beat' && request.count > 0) return { status: 503 };
    return undefined;
  });
  const changes = [];
  const controller = new AbortController();
  const run = runShards({
    client,
    signal: controller.signal,
    log: () => {},
    onClaimChange: (change) => changes.push(change.reason ?? change.event),
    start: (context) => startDiscordenoShards(context, { token: discord.token, intents: 1 }),
  });
  await until(() => changes.includes('lapsed'));
  controller.abort();
  await run;
  const ready = discord.events.find((event) => event.type === 'ready');
  const closed = discord.events.find((event) => event.type === 'close');
  const lapsedAt = shardman.requests.find((request) => request.path === '/connect').time + 1000;
  assert.equal(closed.code, 4000);
  assert.ok(ready.time < closed.time && closed.time - lapsedAt < 500, `closed ${closed.time - lapsedAt} ms after the lapse`);

  const failing = await deployment((request, stand) =>
    request.path === '/connect' ? { status: 200, body: connectAnswer({ shardIds: [0], shardCount: 1, leaseSeconds: 6, gatewayUrl: stand.gatewayUrl }) } : undefined,
  );
  const failed = [];
  const reason = await runShards({
    client: failing.client,
    log: () => {},
    onClaimChange: (change) => failed.push(change.reason ?? change.event),
    start: (context) => startDiscordenoShards(context, { token: 'wrong', intents: 1 }),
  });
  assert.equal(reason, 'failed');
  assert.deepEqual(failed, ['claimed', 'failed']);
  assert.deepEqual(failing.shardman.requests.slice(-2).map((request) => request.path), ['/beat', '/disconnect']);
});
