// The @discordjs/ws 2 adapter in-process: a scripted shardman without gateway_url, the stand-in Discord.
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, test } from 'node:test';
import { REST } from '@discordjs/rest';
import { ShardmanClient, restOptionsFor, runShards } from 'shardman-client';
import { startWebSocketShards } from 'shardman-client/ws';
import { startDiscord } from './support/discord.js';
import { connectAnswer, startFakeShardman, usualAnswer } from './support/fake-shardman.js';

const cleanup = [];
after(() => Promise.all(cleanup.map((stop) => stop())));

test('DISCORD_API_BASE with its version becomes @discordjs/rest\'s api and version', () => {
  assert.deepEqual(restOptionsFor('https://discord.com/api/v10'), { api: 'https://discord.com/api', version: '10' });
  assert.deepEqual(restOptionsFor('http://127.0.0.1:9/api/v9/'), { api: 'http://127.0.0.1:9/api', version: '9' });
  assert.deepEqual(restOptionsFor('http://proxy.local'), { api: 'http://proxy.local', version: '10' });
});

test('without a gateway_url the shards find the gateway through REST at DISCORD_API_BASE, and beats carry their sessions; standby -> active is logged', async () => {
  const discord = await startDiscord();
  cleanup.push(() => discord.stop());
  const shardman = await startFakeShardman((request) => {
    const { path, count } = request;
    if (path === '/connect') return { status: 200, body: connectAnswer({ shardIds: [0], shardCount: 1, leaseSeconds: 1.5, state: 'standby', generation: 2 }) };
    if (path === '/beat') return { status: 200, body: { shard_id: 0, max_shards: 1, generation: 2, state: count < 2 ? 'standby' : 'active', fence: 7 } };
    return usualAnswer(request);
  });
  cleanup.push(() => shardman.stop());
  const client = new ShardmanClient({ url: shardman.url, secret: 's' });
  const rest = new REST(restOptionsFor(discord.apiBase)).setToken(discord.token);
  const controller = new AbortController();
  const logs = [];
  const run = runShards({
    client,
    signal: controller.signal,
    log: (message) => logs.push(message),
    start: (context) => startWebSocketShards(context, { token: discord.token, intents: 1, rest }),
  });
  const end = performance.now() + 10_000;
  const withResume = () => shardman.requests.find((request) => request.path === '/beat' && request.body.shards[0].resume && request.body.latency != null);
  // Both: which comes first depends on when the library's first heartbeat goes out.
  const activated = () => logs.some((line) => line.includes('is now active (was standby)'));
  while (!(withResume() && activated()) && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 50));
  controller.abort();
  assert.equal(await run, 'shutdown');
  const [ready] = discord.events.filter((event) => event.type === 'ready');
  assert.equal(ready.path, '/?v=10&encoding=json', 'connected at the REST-given gateway, uncompressed');
  const beat = withResume().body;
  assert.deepEqual(beat.resume, { session_id: ready.sessionId, sequence: beat.resume.sequence, resume_gateway_url: `${discord.gatewayUrl}/resume` });
  assert.equal(beat.guild_count, 1);
  assert.ok(beat.resume.sequence >= 1);
  // The shard's dispatches so far are its session's sequence; the process's usage rides along.
  assert.equal(beat.events, beat.resume.sequence);
  assert.equal(beat.shards[0].events, beat.resume.sequence);
  assert.ok(beat.cpu_seconds > 0 && beat.rss_bytes > 1024 * 1024);
  // The IDENTIFY went out between its permit and the permit's confirm, which waited for READY.
  const identified = discord.events.find((event) => event.type === 'identify');
  const permit = shardman.requests.find((request) => request.path === '/identify/permit');
  const confirms = shardman.requests.filter((request) => request.path === '/identify/confirm');
  assert.deepEqual([permit.body, confirms.map((confirm) => confirm.body)], [{ session_id: 's1', shard_id: 0, wait: 10 }, [{ session_id: 's1', shard_id: 0 }]]);
  assert.ok(permit.time < identified.time && ready.time < confirms[0].time, 'permit, IDENTIFY, READY, confirm in this order');
  const connect = shardman.requests.find((request) => request.path === '/connect');
  assert.equal(connect.query.process, `${hostname()}:${process.pid}`);
  assert.ok(logs.some((line) => line.includes('is now active (was standby)')), logs.join('\n'));
});

test('shards released while waiting for READY do not come back to the gateway', async () => {
  // @discordjs/ws reconnects a shard whose READY wait is cut by a destroy; a released claim must not.
  const discord = await startDiscord({ answerIdentify: false });
  cleanup.push(() => discord.stop());
  const shardman = await startFakeShardman((request) =>
    request.path === '/connect' ? { status: 200, body: connectAnswer({ shardIds: [0], shardCount: 1, leaseSeconds: 3, gatewayUrl: discord.gatewayUrl }) } : usualAnswer(request),
  );
  cleanup.push(() => shardman.stop());
  const controller = new AbortController();
  const run = runShards({
    client: new ShardmanClient({ url: shardman.url, secret: 's' }),
    signal: controller.signal,
    log: () => {},
    start: (context) => startWebSocketShards(context, { token: discord.token, intents: 1, rest: new REST() }),
  });
  const end = performance.now() + 5000;
  while (!discord.events.some((event) => event.type === 'identify') && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 20));
  controller.abort();
  assert.equal(await run, 'shutdown');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.deepEqual(discord.events.map((event) => event.type), ['open', 'identify', 'close']);
});

test('a shard Discord refuses for good (4004, a bad token) releases the claim as failed and gives it back', async () => {
  const discord = await startDiscord();
  cleanup.push(() => discord.stop());
  const shardman = await startFakeShardman((request) =>
    request.path === '/connect' ? { status: 200, body: connectAnswer({ shardIds: [0], shardCount: 1, leaseSeconds: 6, gatewayUrl: discord.gatewayUrl }) } : usualAnswer(request),
  );
  cleanup.push(() => shardman.stop());
  const changes = [];
  const reason = await runShards({
    client: new ShardmanClient({ url: shardman.url, secret: 's' }),
    log: () => {},
    onClaimChange: (change) => changes.push(change),
    start: (context) => startWebSocketShards(context, { token: 'wrong', intents: 1, rest: new REST() }),
  });
  assert.equal(reason, 'failed');
  assert.deepEqual(changes.map((change) => change.reason ?? change.event), ['claimed', 'failed']);
  assert.deepEqual(shardman.requests.slice(-2).map((request) => request.path), ['/beat', '/disconnect']);
});

test('a beat naming the shard in reconnect closes it resumable and RESUMEs the same session', async () => {
  const discord = await startDiscord();
  cleanup.push(() => discord.stop());
  const shardman = await startFakeShardman((request) => {
    const { path } = request;
    if (path === '/connect') return { status: 200, body: connectAnswer({ shardIds: [0], shardCount: 1, leaseSeconds: 3, gatewayUrl: discord.gatewayUrl }) };
    // Once the shard has a session, one beat asks to reconnect it.
    if (path === '/beat' && request.body.resume && !shardman.asked) {
      shardman.asked = true;
      return { status: 200, body: { shard_id: 0, max_shards: 1, generation: 1, state: 'active', fence: 7, reconnect: [0] } };
    }
    return usualAnswer(request);
  });
  cleanup.push(() => shardman.stop());
  const controller = new AbortController();
  const run = runShards({
    client: new ShardmanClient({ url: shardman.url, secret: 's' }),
    signal: controller.signal,
    log: () => {},
    start: (context) => startWebSocketShards(context, { token: discord.token, intents: 1, rest: new REST() }),
  });
  const end = performance.now() + 10_000;
  while (!discord.events.some((event) => event.type === 'resumed') && performance.now() < end) await new Promise((resolve) => setTimeout(resolve, 50));
  controller.abort();
  assert.equal(await run, 'shutdown');
  const [ready] = discord.events.filter((event) => event.type === 'ready');
  assert.deepEqual(
    discord.events.filter((event) => event.type !== 'open').map((event) => [event.type, event.code ?? event.sessionId ?? null]),
    [['identify', null], ['ready', ready.sessionId], ['close', 4200], ['resume', ready.sessionId], ['resumed', ready.sessionId], ['close', 4000]],
  );
  assert.equal(discord.events.filter((event) => event.type === 'identify').length, 1, 'no second IDENTIFY');
});
