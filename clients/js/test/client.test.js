import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, test } from 'node:test';
import {
  InvalidSecretError,
  NoShardsAvailableError,
  PROCESS_LABEL_MAX_CHARS,
  SessionNotFoundError,
  SessionRetiredError,
  ShardmanClient,
  ShardmanUnavailableError,
  beatBody,
  defaultProcessLabel,
  parseRetryAfter,
  processUsage,
  retryDelay,
} from 'shardman-client';
import { connectAnswer, startFakeShardman } from './support/fake-shardman.js';

const servers = [];
after(() => Promise.all(servers.map((server) => server.stop())));

async function fake(answer) {
  const server = await startFakeShardman(answer);
  servers.push(server);
  return { server, client: new ShardmanClient({ url: server.url, secret: 'sekrit', baseDelay: 0.05, maxDelay: 1 }) };
}

test('connect answers a typed claim with the whole group', async () => {
  const { client, server } = await fake(() => ({
    status: 200,
    body: connectAnswer({ shardIds: [2, 3], shardCount: 4, sleepDurations: [0.5, 5.75], resumes: [{ session_id: 'd1', sequence: 9, resume_gateway_url: 'wss://r' }, null], gatewayUrl: 'wss://g' }),
  }));
  const claim = await client.connect();
  assert.deepEqual(
    { ...claim, sentAt: undefined, receivedAt: undefined },
    {
      shardId: 2, shardIds: [2, 3], shardCount: 4, sessionId: 's1', fence: 7, generation: 1, state: 'active',
      sleepDurations: [0.5, 5.75], resumes: [{ sessionId: 'd1', sequence: 9, resumeGatewayUrl: 'wss://r' }, null],
      leaseSeconds: 6, beatInterval: 2, gatewayUrl: 'wss://g', placement: 'groups', sentAt: undefined, receivedAt: undefined,
    },
  );
  assert.ok(claim.sentAt <= claim.receivedAt);
  assert.equal(server.requests[0].headers.authorization, 'sekrit');
});

test('connect retries a 503 no sooner than its Retry-After', async () => {
  const { client, server } = await fake(({ count }) =>
    count === 1 ? { status: 503, body: { detail: 'Store Unavailable' }, headers: { 'Retry-After': '0.4' } } : { status: 200, body: connectAnswer() },
  );
  const claim = await client.connect();
  assert.equal(claim.sessionId, 's1');
  const [first, second] = server.requests;
  assert.ok(second.time - first.time >= 390, `retried after ${second.time - first.time} ms`);
});

test('connect retries 429 with exponential backoff and gives up after its attempts', async () => {
  const { client, server } = await fake(() => ({ status: 429, body: { detail: 'Identify Budget Exhausted' } }));
  await assert.rejects(client.connect({ attempts: 4 }), (error) => error instanceof ShardmanUnavailableError && error.status === 429);
  assert.equal(server.requests.length, 4);
  const gaps = server.requests.slice(1).map((request, i) => request.time - server.requests[i].time);
  assert.ok(gaps[2] > gaps[0], `gaps grow: ${gaps.map(Math.round)}`);
});

test('a waiting connect outlasts the request timeout and counts its lease from the send time plus its wait', async () => {
  const { server } = await fake(() => ({ status: 200, body: { ...connectAnswer(), waited: 0.5 }, delay: 500 }));
  const client = new ShardmanClient({ url: server.url, secret: 'sekrit', timeout: 0.3 });
  const sentAt = performance.now();
  const claim = await client.connect({ wait: 1 });
  assert.equal(server.requests[0].query.wait, '1');
  assert.ok(Math.abs(claim.sentAt - (sentAt + 500)) < 100, `the lease counts from ${claim.sentAt - sentAt} ms after the send`);
});

test('connect 401 says no shard is available, without retrying', async () => {
  const { client, server } = await fake(() => ({ status: 401, body: { detail: 'No Shards Available' } }));
  await assert.rejects(client.connect(), NoShardsAvailableError);
  assert.equal(server.requests.length, 1);
});

test('a wrong secret is a 403 error that is not retried', async () => {
  const { client, server } = await fake(() => ({ status: 403, body: { detail: 'Invalid Token' } }));
  await assert.rejects(client.connect(), InvalidSecretError);
  assert.equal(server.requests.length, 1);
});

test('beat sends per-shard reports, the first shard flat too, and asks for the representation', async () => {
  const { client, server } = await fake(() => ({ status: 200, body: { shard_id: 0, max_shards: 2, generation: 3, state: 'standby', fence: 7 } }));
  const answer = await client.beat('s1', [
    { shardId: 0, guildCount: 5, latency: 0.04, resume: { sessionId: 'd0', sequence: 12, resumeGatewayUrl: 'wss://r0' }, events: 12 },
    { shardId: 1, guildCount: null, latency: null, resume: null, events: null },
  ]);
  assert.equal(answer.state, 'standby');
  assert.equal(answer.generation, 3);
  const [request] = server.requests;
  assert.equal(request.headers.prefer, 'return=representation');
  assertProcessUsage(request.body);
  assert.deepEqual(request.body, {
    session_id: 's1',
    guild_count: 5,
    latency: 0.04,
    resume: { session_id: 'd0', sequence: 12, resume_gateway_url: 'wss://r0' },
    events: 12,
    shards: [
      { shard_id: 0, guild_count: 5, latency: 0.04, resume: { session_id: 'd0', sequence: 12, resume_gateway_url: 'wss://r0' }, events: 12 },
      { shard_id: 1 },
    ],
    ready: false, // shard 1 has no Discord session yet
  });
});

test('beat 401 means retired, 404 means lost, and a 503 is not retried by the beat itself', async () => {
  const statuses = { r: 401, l: 404, u: 503 };
  const { client, server } = await fake(({ body }) => ({ status: statuses[body.session_id], body: { detail: 'x' } }));
  await assert.rejects(client.beat('r'), SessionRetiredError);
  await assert.rejects(client.beat('l'), SessionNotFoundError);
  await assert.rejects(client.beat('u'), ShardmanUnavailableError);
  assert.equal(server.requests.length, 3);
});

test('a session id shardman re-signed is sent from the next request on', async () => {
  const { client, server } = await fake(({ path, count }) => {
    if (path === '/identify') return { status: 200, body: { sleep_duration: 0 } };
    if (path === '/identify/permit') return { status: 200, body: { permit: true, shard_id: 0 } };
    if (path === '/identify/confirm') return { status: 200, body: { confirmed: true } };
    if (path === '/beat' && count === 1) return { status: 204, headers: { 'Session-Id': 's1-resigned' } };
    return { status: 204 };
  });
  await client.beat('s1');
  await client.beat('s1');
  await client.identify('s1');
  await client.identifyPermit('s1');
  await client.identifyConfirm('s1');
  await client.disconnect('s1');
  assert.deepEqual(
    server.requests.map((request) => [request.path, request.body.session_id]),
    [['/beat', 's1'], ['/beat', 's1-resigned'], ['/identify', 's1-resigned'], ['/identify/permit', 's1-resigned'], ['/identify/confirm', 's1-resigned'], ['/disconnect', 's1-resigned']],
  );
});

test('a permit is asked for one shard with how long shardman may wait, and the request outlives that wait', async () => {
  const { client, server } = await fake(({ path }) =>
    path === '/identify/permit' ? { status: 200, body: { permit: false, shard_id: 3, retry_after: 0.5 }, delay: 300 } : { status: 200, body: { confirmed: false } },
  );
  const slow = new ShardmanClient({ url: client.url, secret: 'sekrit', timeout: 0.1 });
  const permit = await slow.identifyPermit('s1', 3, { wait: 0.25 });
  assert.deepEqual([permit.granted, permit.shardId, permit.retryAfter], [false, 3, 0.5]);
  assert.equal(await client.identifyConfirm('s1', 3), false);
  assert.deepEqual(server.requests.map((request) => request.body), [{ session_id: 's1', shard_id: 3, wait: 0.25 }, { session_id: 's1', shard_id: 3 }]);
});

test('identify books a slot for one shard of the group', async () => {
  const { client, server } = await fake(() => ({ status: 200, body: { sleep_duration: 5.25 } }));
  const slot = await client.identify('s1', 3);
  assert.equal(slot.sleepDuration, 5.25);
  assert.deepEqual(server.requests[0].body, { session_id: 's1', shard_id: 3 });
});

test('disconnect of a session shardman no longer knows is not an error', async () => {
  const { client } = await fake(({ body }) => (body.session_id === 'gone' ? { status: 404, body: { detail: 'Session Not Found' } } : { status: 204 }));
  assert.equal(await client.disconnect('s1'), true);
  assert.equal(await client.disconnect('gone'), false);
});

test('Retry-After is read as seconds or as an HTTP date', () => {
  assert.equal(parseRetryAfter('1.5'), 1.5);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter('soon'), null);
});

test('backoff doubles up to its cap and never undercuts Retry-After', () => {
  const options = { baseDelay: 0.5, maxDelay: 30 };
  const middle = () => 0.5;
  assert.deepEqual([0, 1, 2, 3].map((attempt) => retryDelay(attempt, null, options, middle)), [0.5, 1, 2, 4]);
  assert.equal(retryDelay(20, null, options, middle), 30);
  assert.equal(retryDelay(0, 7, options, middle), 7);
});

test('the secret does not show when the client is inspected', async () => {
  const { client } = await fake(() => ({ status: 204 }));
  const { inspect } = await import('node:util');
  assert.ok(!inspect(client).includes('sekrit'));
  assert.ok(!JSON.stringify(client).includes('sekrit'));
});

/**
 * Every beat carries the process's label, CPU time and resident memory: checked, then taken out of `body`.
 * @param {Record<string, unknown>} body
 */
function assertProcessUsage(body) {
  const { cpu_seconds: cpu, rss_bytes: rss, process: label } = body;
  delete body.cpu_seconds;
  delete body.rss_bytes;
  delete body.process;
  assert.equal(label, defaultProcessLabel());
  assert.ok(typeof cpu === 'number' && cpu > 0 && cpu <= processUsage().cpuSeconds, `cpu_seconds ${cpu}`);
  assert.ok(Number.isInteger(rss) && rss > 1024 * 1024, `rss_bytes ${rss}`);
}

test('connect files the process under hostname:pid unless the bot names it', async () => {
  const queries = [];
  const server = await startFakeShardman(({ query }) => {
    queries.push(query);
    return { status: 200, body: connectAnswer() };
  });
  try {
    await new ShardmanClient({ url: server.url, secret: 'k' }).connect();
    await new ShardmanClient({ url: server.url, secret: 'k', process: 'worker 3' }).connect();
  } finally {
    await server.stop();
  }
  assert.deepEqual(queries, [{ process: `${hostname()}:${process.pid}` }, { process: 'worker 3' }]);
});

test('the default process label fits shardman\'s limit of 128 characters', () => {
  assert.ok(defaultProcessLabel().length <= PROCESS_LABEL_MAX_CHARS);
  assert.ok(defaultProcessLabel().endsWith(`:${process.pid}`));
});

test('process usage reads this process\'s CPU time and resident memory', () => {
  const before = processUsage();
  let spin = 0;
  for (let i = 0; i < 2_000_000; i++) spin += i % 7;
  const after = processUsage();
  assert.ok(spin > 0 && after.cpuSeconds > before.cpuSeconds);
  assert.ok(after.rssBytes > 1024 * 1024);
});

test('beatBody leaves the usage out unless given it', () => {
  assert.deepEqual(beatBody('s', []), { session_id: 's' });
  assert.deepEqual(beatBody('s', [], { cpuSeconds: 1.5, rssBytes: 4096 }), { session_id: 's', cpu_seconds: 1.5, rss_bytes: 4096 });
});
