// The core client against the real shardman binary (SHARDMAN_BIN, default ../../target/debug/shardman).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { NoShardsAvailableError, SessionNotFoundError, ShardmanClient } from 'shardman-client';
import { startShardman } from './support/shardman.js';

let shardman;
let client;
before(async () => {
  shardman = await startShardman({ MAX_SHARDS: '2', SHARDS_PER_PROCESS: '2', MAX_SECONDS: '6' });
  client = new ShardmanClient({ url: shardman.url, secret: shardman.secret });
});
after(() => shardman?.stop());

// First, while no slot has been booked in the bucket yet.
test('permits against shardman itself: granted, confirmed once, and the bucket closed to the next shard for Discord\'s 5 s', async () => {
  const claim = await client.connect({ identify: 'permit' });
  assert.deepEqual(claim.sleepDurations, [0, 0], 'no slot booked');
  const permit = await client.identifyPermit(claim.sessionId, 0, { wait: 10 });
  assert.deepEqual([permit.granted, permit.shardId], [true, 0]);
  assert.equal(await client.identifyConfirm(claim.sessionId, 0), true);
  assert.equal(await client.identifyConfirm(claim.sessionId, 0), false, 'confirmed already');
  // One bucket (max_concurrency 1): shard 1 waits for it.
  const refused = await client.identifyPermit(claim.sessionId, 1, { wait: 0 });
  assert.equal(refused.granted, false);
  assert.ok(refused.retryAfter > 4 && refused.retryAfter <= 5.1, `retry_after ${refused.retryAfter}`);
  await client.disconnect(claim.sessionId);
});

test('claim, beat, identify and disconnect against shardman itself; resume data reaches the next claim', async () => {
  const claim = await client.connect();
  assert.deepEqual([claim.shardIds, claim.shardCount, claim.leaseSeconds, claim.beatInterval, claim.state], [[0, 1], 2, 6, 2, 'active']);
  assert.equal(claim.sleepDurations.length, 2);
  await assert.rejects(client.connect(), NoShardsAvailableError);

  const answer = await client.beat(claim.sessionId, [
    { shardId: 0, guildCount: 3, latency: 0.05, resume: { sessionId: 'discord-0', sequence: 41, resumeGatewayUrl: 'wss://resume-0' } },
    { shardId: 1, guildCount: 4, latency: 0.06, resume: { sessionId: 'discord-1', sequence: 42, resumeGatewayUrl: 'wss://resume-1' } },
  ]);
  assert.deepEqual([answer.status, answer.state, answer.shardCount, answer.generation], [200, 'active', 2, claim.generation]);

  const slot = await client.identify(claim.sessionId, 1);
  assert.ok(slot.sleepDuration >= 0);

  assert.equal(await client.disconnect(claim.sessionId), true);
  await assert.rejects(client.beat(claim.sessionId), SessionNotFoundError);

  const next = await client.connect();
  assert.deepEqual(next.resumes, [
    { sessionId: 'discord-0', sequence: 41, resumeGatewayUrl: 'wss://resume-0' },
    { sessionId: 'discord-1', sequence: 42, resumeGatewayUrl: 'wss://resume-1' },
  ]);
  assert.deepEqual(next.sleepDurations, [0, 0]);
  await client.disconnect(next.sessionId);
});

test('a waiting connect gets the shard given back at once, with its resume data', async () => {
  const holder = await client.connect();
  await client.beat(holder.sessionId, [{ shardId: 0, resume: { sessionId: 'discord-0', sequence: 7, resumeGatewayUrl: 'wss://resume-0' } }]);
  const started = performance.now();
  await assert.rejects(client.connect({ wait: 0.5 }), NoShardsAvailableError);
  assert.ok(performance.now() - started >= 500, 'shardman waited before its 401');

  const waiting = client.connect({ wait: 10 });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const releasedAt = performance.now();
  await client.disconnect(holder.sessionId);
  const claim = await waiting;
  assert.ok(performance.now() - releasedAt < 1000, `answered ${performance.now() - releasedAt} ms after the release`);
  assert.deepEqual(claim.shardIds, [0, 1]);
  assert.deepEqual(claim.resumes[0], { sessionId: 'discord-0', sequence: 7, resumeGatewayUrl: 'wss://resume-0' });
  await client.disconnect(claim.sessionId);
});
