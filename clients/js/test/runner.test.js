import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { IdentifyPacer, LeaseView, ShardmanClient, runShards } from 'shardman-client';
import { connectAnswer, startFakeShardman } from './support/fake-shardman.js';

const servers = [];
after(() => Promise.all(servers.map((server) => server.stop())));

async function fake(answer) {
  const server = await startFakeShardman(answer);
  servers.push(server);
  return { server, client: new ShardmanClient({ url: server.url, secret: 'sekrit', baseDelay: 0.05, maxDelay: 0.5 }) };
}

/** A stand-in for a library adapter: records when and why it was stopped. */
function recordingShards(stops) {
  return async (context) => ({
    report: () => context.claim.shardIds.map((shardId) => ({ shardId, guildCount: 1, latency: 0.01, resume: { sessionId: `d-${context.claim.sessionId}`, sequence: 3, resumeGatewayUrl: 'wss://r' } })),
    stop: async (reason) => stops.push({ sessionId: context.claim.sessionId, reason, time: performance.now() }),
  });
}

const silent = () => {};

test('the lease view starts at the connect send time plus the longest sleep plus the lease, and moves with each acknowledged beat', () => {
  let now = 1000;
  const lease = new LeaseView({ sentAt: 1000, sleepDurations: [2, 7], leaseSeconds: 6 }, { now: () => now });
  assert.equal(lease.deadline, 14_000);
  lease.acknowledge(5000);
  assert.equal(lease.deadline, 11_000);
  now = 10_999;
  assert.equal(lease.expired(), false);
  now = 11_000;
  assert.equal(lease.expired(), true);
});

test('a lease view whose process was frozen past its deadline lapses within a poll of waking', async () => {
  const lease = new LeaseView({ sentAt: performance.now(), sleepDurations: [0], leaseSeconds: 0.3 }, { checkEvery: 100 });
  let lapsedAt = null;
  lease.watch(() => (lapsedAt = performance.now()));
  const frozenUntil = performance.now() + 700;
  while (performance.now() < frozenUntil) {
    // a blocked event loop stands in for SIGSTOP: no timer runs until it ends
  }
  while (lapsedAt === null && performance.now() < frozenUntil + 1000) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.ok(lapsedAt !== null && lapsedAt - frozenUntil < 250, `lapsed ${lapsedAt && lapsedAt - frozenUntil} ms after waking`);
});

test('a lapsed lease stops the shards at its deadline, never beats that session again, and claims anew', async () => {
  let connects = 0;
  const { server } = await fake(({ path, body, count }) => {
    if (path === '/connect') return { status: 200, body: connectAnswer({ sessionId: `s${++connects}`, leaseSeconds: 1.2 }) };
    if (path === '/beat' && body.session_id === 's1' && count === 1) return { status: 204 };
    if (path === '/beat' && body.session_id === 's1') return { status: 503, body: { detail: 'Store Unavailable' }, headers: { 'Retry-After': '1' } };
    return { status: 204 };
  });
  // The lease view counts from the moment a beat is sent: note when each request leaves.
  const sent = [];
  const client = new ShardmanClient({
    url: server.url,
    secret: 'sekrit',
    fetch: (url, init) => {
      sent.push({ url: String(url), body: init.body && JSON.parse(init.body), time: performance.now() });
      return fetch(url, init);
    },
  });
  const stops = [];
  const changes = [];
  const controller = new AbortController();
  const running = runShards({ client, start: recordingShards(stops), signal: controller.signal, log: silent, onClaimChange: (change) => {
    changes.push(change);
    if (change.event === 'claimed' && changes.length > 2) controller.abort();
  } });
  assert.equal(await running, 'shutdown');
  const firstBeat = sent.find((request) => request.url.endsWith('/beat'));
  const lapse = stops.find((stop) => stop.sessionId === 's1');
  assert.equal(lapse.reason, 'lapsed');
  const late = lapse.time - (firstBeat.time + 1200);
  assert.ok(late > -5 && late < 300, `stopped ${late} ms after the lease view's deadline`);
  const afterLapse = sent.filter((request) => request.body?.session_id === 's1' && request.time > lapse.time);
  assert.deepEqual(afterLapse, []);
  assert.deepEqual(changes.map((change) => [change.event, change.reason]), [['claimed', undefined], ['released', 'lapsed'], ['claimed', undefined], ['released', 'shutdown']]);
});

test('a beat answered 404 stops the shards as lost and claims anew; shutdown then hands resume data over and disconnects', async () => {
  let connects = 0;
  const { client, server } = await fake(({ path, body }) => {
    if (path === '/connect') return { status: 200, body: connectAnswer({ sessionId: `s${++connects}`, leaseSeconds: 3 }) };
    if (path === '/beat' && body.session_id === 's1') return { status: 404, body: { detail: 'Session Not Found' } };
    return { status: 204 };
  });
  const stops = [];
  const changes = [];
  const controller = new AbortController();
  const running = runShards({ client, start: recordingShards(stops), signal: controller.signal, log: silent, onClaimChange: (change) => {
    changes.push(change);
    if (change.event === 'claimed' && change.generation === 1 && changes.length === 3) setTimeout(() => controller.abort(), 300);
  } });
  assert.equal(await running, 'shutdown');
  assert.deepEqual(stops.map((stop) => [stop.sessionId, stop.reason]), [['s1', 'lost'], ['s2', 'shutdown']]);
  assert.deepEqual(changes.map((change) => change.reason ?? change.event), ['claimed', 'lost', 'claimed', 'shutdown']);
  const s2 = server.requests.filter((request) => request.body?.session_id === 's2');
  assert.equal(s2.at(-1).path, '/disconnect');
  assert.deepEqual(s2.at(-2).body.shards[0].resume, { session_id: 'd-s2', sequence: 3, resume_gateway_url: 'wss://r' });
  assert.ok(!server.requests.some((request) => request.path === '/disconnect' && request.body.session_id === 's1'));
});

test('a shutdown beats the resume data while the shards close where the reports are final on stop, and disconnects once they are closed', async () => {
  // Each shard takes 300 ms to close; its sequence is 3 when stop() is called and 4 once closed (a
  // dispatch read during the close, which only an adapter that is not `finalOnStop` hands the bot).
  const closing = (finalOnStop) => async (context) => {
    let closed = null;
    let sequence = 3;
    return {
      finalOnStop,
      report: () => [{ shardId: 0, resume: { sessionId: `d-${context.claim.sessionId}`, sequence, resumeGatewayUrl: null } }],
      stop: async () => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        if (!finalOnStop) sequence = 4;
        closed = performance.now();
      },
      get closed() {
        return closed;
      },
    };
  };
  for (const finalOnStop of [true, false]) {
    const { client, server } = await fake(({ path }) => (path === '/connect' ? { status: 200, body: connectAnswer({ leaseSeconds: 6 }) } : { status: 204 }));
    const controller = new AbortController();
    let shards = null;
    const start = closing(finalOnStop);
    const run = runShards({ client, start: async (context) => (shards = await start(context)), signal: controller.signal, log: silent });
    while (!server.requests.some((request) => request.path === '/beat')) await new Promise((resolve) => setTimeout(resolve, 10));
    const stoppedAt = performance.now();
    controller.abort();
    assert.equal(await run, 'shutdown');
    const [lastBeat, disconnect] = server.requests.slice(-2);
    assert.deepEqual([lastBeat.path, disconnect.path], ['/beat', '/disconnect']);
    assert.equal(lastBeat.body.shards[0].resume.sequence, finalOnStop ? 3 : 4, 'the last sequence the bot was handed');
    if (finalOnStop) assert.ok(lastBeat.time < stoppedAt + 200, 'beaten while the shards close');
    else assert.ok(lastBeat.time >= shards.closed, 'beaten once the shards are closed');
    assert.ok(disconnect.time >= shards.closed, 'disconnected once the shards are closed');
  }
});

test('a last beat that fails is sent again, with the same resume data, before the disconnect', async () => {
  const controller = new AbortController();
  const lastBeats = [];
  const { client, server } = await fake(({ path, body }) => {
    if (path === '/connect') return { status: 200, body: connectAnswer({ leaseSeconds: 6 }) };
    if (path !== '/beat' || !controller.signal.aborted) return { status: 204 };
    lastBeats.push(body);
    return lastBeats.length === 1 ? { status: 503, body: { detail: 'Redis unavailable' } } : { status: 204 };
  });
  const run = runShards({ client, start: recordingShards([]), signal: controller.signal, log: silent });
  while (!server.requests.some((request) => request.path === '/beat')) await new Promise((resolve) => setTimeout(resolve, 10));
  controller.abort();
  assert.equal(await run, 'shutdown');
  assert.equal(lastBeats.length, 2, 'the last beat is sent again after a 503');
  assert.ok(lastBeats.every((body) => body.shards[0].resume.sequence === 3));
  assert.equal(server.requests.at(-1).path, '/disconnect');
});

test('a beat answered 401 retires: the shards stop and the run ends', async () => {
  const { client, server } = await fake(({ path }) =>
    path === '/connect' ? { status: 200, body: connectAnswer({ leaseSeconds: 3 }) } : { status: 401, body: { detail: 'No Shards Available' } },
  );
  const stops = [];
  const changes = [];
  assert.equal(await runShards({ client, start: recordingShards(stops), log: silent, onClaimChange: (change) => changes.push(change) }), 'retired');
  assert.deepEqual(stops.map((stop) => stop.reason), ['retired']);
  assert.deepEqual(changes.at(-1), { event: 'released', shard_ids: [0], shard_count: 1, generation: 1, reason: 'retired' });
  assert.ok(!server.requests.some((request) => request.path === '/disconnect'));
});

test('connect asks shardman to wait for a free shard, and for permits instead of slots', async () => {
  const { client, server } = await fake(() => ({ status: 200, body: connectAnswer({ leaseSeconds: 3 }) }));
  const controller = new AbortController();
  await runShards({ client, start: recordingShards([]), signal: controller.signal, log: silent, onClaimChange: () => controller.abort() });
  const connect = server.requests.find((request) => request.path === '/connect');
  assert.equal(connect.query.wait, '30');
  assert.equal(connect.query.identify, 'permit');
});

test('connect is asked again at once after a wait that ran out', async () => {
  const { client, server } = await fake(({ path, count }) => {
    if (path !== '/connect') return { status: 204 };
    return count === 1 ? { status: 401, body: { detail: 'No Shards Available' }, delay: 300 } : { status: 200, body: connectAnswer({ leaseSeconds: 3 }) };
  });
  const controller = new AbortController();
  await runShards({ client, start: recordingShards([]), signal: controller.signal, log: silent, connectWait: 0.4, onClaimChange: () => controller.abort() });
  const connects = server.requests.filter((request) => request.path === '/connect');
  assert.equal(connects.length, 2);
  const gap = connects[1].time - connects[0].time;
  assert.ok(gap < 600, `asked again after ${gap} ms`);
});

test('connect is asked again about a second after "No Shards Available" that came back without waiting', async () => {
  const { client, server } = await fake(({ count }) =>
    count < 3 ? { status: 401, body: { detail: 'No Shards Available' } } : { status: 200, body: connectAnswer({ leaseSeconds: 3 }) },
  );
  const controller = new AbortController();
  await runShards({ client, start: recordingShards([]), signal: controller.signal, log: silent, onClaimChange: () => controller.abort() });
  const connects = server.requests.filter((request) => request.path === '/connect');
  assert.equal(connects.length, 3);
  const gap = connects[1].time - connects[0].time;
  assert.ok(gap > 750 && gap < 2000, `asked again after ${gap} ms`);
});

test('each IDENTIFY asks /identify/permit until granted, and its confirm goes once, after the IDENTIFY was sent', async () => {
  const { client, server } = await fake(({ path, count }) => {
    if (path === '/identify/permit') return count === 1 ? { status: 200, body: { permit: false, shard_id: 1, retry_after: 0.1 }, delay: 150 } : { status: 200, body: { permit: true, shard_id: 1 } };
    return { status: 200, body: { confirmed: true } };
  });
  const claim = await fakeClaim({ shardIds: [0, 1] });
  const pacer = new IdentifyPacer(client, claim, { signal: new AbortController().signal, release: () => assert.fail('released'), permitWait: 0.2 });
  await pacer.identifySent(1);
  assert.equal(server.requests.length, 0, 'nothing to confirm before a grant');
  await pacer.waitForIdentify(1);
  assert.deepEqual(server.requests.map((request) => [request.path, request.body]), [
    ['/identify/permit', { session_id: 's1', shard_id: 1, wait: 0.2 }],
    ['/identify/permit', { session_id: 's1', shard_id: 1, wait: 0.2 }],
  ]);
  await pacer.identifySent(1);
  await pacer.identifySent(1); // READY after the IDENTIFY: confirmed already
  assert.deepEqual(server.requests.slice(2).map((request) => [request.path, request.body]), [['/identify/confirm', { session_id: 's1', shard_id: 1 }]]);
});

test('a permit refused at once is asked again after its retry_after, not in a busy loop', async () => {
  const { client, server } = await fake(({ count }) =>
    count < 3 ? { status: 200, body: { permit: false, shard_id: 0, retry_after: 0.3 } } : { status: 200, body: { permit: true, shard_id: 0 } },
  );
  const claim = await fakeClaim({});
  const pacer = new IdentifyPacer(client, claim, { signal: new AbortController().signal, release: () => assert.fail('released'), permitWait: 10 });
  await pacer.waitForIdentify(0);
  const times = server.requests.map((request) => request.time);
  assert.equal(times.length, 3);
  for (const gap of [times[1] - times[0], times[2] - times[1]]) assert.ok(gap >= 0.3 * 0.8 * 1000 - 5, `asked again after ${gap} ms`);
});

for (const [status, detail, reason] of [[404, 'Session Not Found', 'lost'], [401, 'No Shards Available', 'retired']]) {
  test(`/identify/permit answering ${status} releases the claim as ${reason} and holds the shard until its connection closes`, async () => {
    const { client } = await fake(() => ({ status, body: { detail } }));
    const claim = await fakeClaim({});
    const released = [];
    const pacer = new IdentifyPacer(client, claim, { signal: new AbortController().signal, release: (why) => released.push(why) });
    const shard = new AbortController();
    const waiting = pacer.waitForIdentify(0, shard.signal);
    let settled = false;
    waiting.catch(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.deepEqual(released, [reason]);
    assert.equal(settled, false, 'the library must not go on to IDENTIFY');
    shard.abort();
    await assert.rejects(waiting);
  });
}

test('a permit granted after the claim was released is not used', async () => {
  const claimSignal = new AbortController();
  const { client, server } = await fake(() => {
    claimSignal.abort('lapsed');
    return { status: 200, body: { permit: true, shard_id: 0 } };
  });
  const claim = await fakeClaim({});
  const pacer = new IdentifyPacer(client, claim, { signal: claimSignal.signal, release: () => {} });
  const shard = new AbortController();
  const waiting = pacer.waitForIdentify(0, shard.signal);
  let settled = false;
  waiting.catch(() => (settled = true));
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(settled, false);
  shard.abort();
  await assert.rejects(waiting);
  await pacer.identifySent(0);
  assert.deepEqual(server.requests.map((request) => request.path), ['/identify/permit'], 'no confirm for a released claim');
});

async function fakeClaim(options) {
  const { claimFromWire } = await import('shardman-client');
  const now = performance.now();
  const wire = connectAnswer(options);
  if (options.resumes) wire.resumes = options.resumes.map((resume) => resume && { session_id: resume.sessionId, sequence: resume.sequence, resume_gateway_url: resume.resumeGatewayUrl });
  return claimFromWire(wire, now, now);
}

test('shards that fail to start release the claim as failed, give it back and the error reaches the caller', async () => {
  const { client, server } = await fake(({ path }) => (path === '/connect' ? { status: 200, body: connectAnswer({ leaseSeconds: 3 }) } : { status: 204 }));
  const start = async () => {
    throw new Error('no gateway');
  };
  const changes = [];
  await assert.rejects(runShards({ client, start, log: silent, onClaimChange: (change) => changes.push(change) }), /no gateway/);
  assert.deepEqual(changes.map((change) => change.reason ?? change.event), ['claimed', 'failed']);
  assert.deepEqual(server.requests.slice(-2).map((request) => request.path), ['/beat', '/disconnect']);
});

test('an adapter releasing as failed ends the run with "failed" after giving the claim back', async () => {
  const { client, server } = await fake(({ path }) => (path === '/connect' ? { status: 200, body: connectAnswer({ leaseSeconds: 3 }) } : { status: 204 }));
  const stops = [];
  const start = async (context) => {
    setTimeout(() => context.release('failed'), 100); // the library gave up, as on close code 4004
    return recordingShards(stops)(context);
  };
  assert.equal(await runShards({ client, start, log: silent }), 'failed');
  assert.deepEqual(stops.map((stop) => stop.reason), ['failed']);
  const last = server.requests.slice(-2);
  assert.deepEqual(last.map((request) => request.path), ['/beat', '/disconnect']);
  assert.deepEqual(last[0].body.shards[0].resume, { session_id: 'd-s1', sequence: 3, resume_gateway_url: 'wss://r' });
});

/** A shardman placing by load: `/connect` grants the scripted shards one by one, then holds every later ask. */
function placingShardman(shardIds, beat = () => ({ status: 204 })) {
  return fake((request) => {
    const { path, count } = request;
    if (path === '/connect') {
      const shardId = shardIds[count - 1];
      if (shardId === undefined) return { status: 401, body: { detail: 'No Shards Available' }, delay: 5000 };
      return { status: 200, body: connectAnswer({ sessionId: `s${shardId}`, shardIds: [shardId], shardCount: 4, leaseSeconds: 1.5, placement: 'load' }), delay: count === 1 ? 0 : 200 };
    }
    if (path === '/beat') return beat(request);
    return { status: 204 };
  });
}

const until = async (what, check, timeout = 5000) => {
  const end = performance.now() + timeout;
  while (!check()) {
    if (performance.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};

test('placed by load, the process runs every claim it is given side by side, with a waiting /connect always open', async () => {
  const { client, server } = await placingShardman([0, 1]);
  const controller = new AbortController();
  const stops = [];
  const changes = [];
  const run = runShards({ client, start: recordingShards(stops), signal: controller.signal, log: silent, onClaimChange: (change) => changes.push(change) });
  await until('a third /connect, waiting', () => server.requests.filter((request) => request.path === '/connect').length === 3);
  assert.deepEqual(changes.map((change) => [change.event, change.shard_ids]), [['claimed', [0]], ['claimed', [1]]]);
  assert.deepEqual(stops, [], 'both claims still held');
  await until('beats of both sessions', () => ['s0', 's1'].every((id) => server.requests.some((request) => request.path === '/beat' && request.body.session_id === id)));
  controller.abort();
  assert.equal(await run, 'shutdown');
  assert.deepEqual(stops.map((stop) => [stop.sessionId, stop.reason]).sort(), [['s0', 'shutdown'], ['s1', 'shutdown']]);
  const disconnected = server.requests.filter((request) => request.path === '/disconnect').map((request) => request.body.session_id);
  assert.deepEqual(disconnected.sort(), ['s0', 's1']);
});

test('a beat answering hand_over ends that claim alone, as a shutdown hands it over; the others go on', async () => {
  const { client, server } = await placingShardman([0, 1], ({ body, count }) =>
    body.session_id === 's0' && count >= 3 ? { status: 200, body: { shard_id: 0, max_shards: 4, generation: 1, state: 'active', fence: 7, hand_over: true, reconnect: [] } } : { status: 204 },
  );
  const controller = new AbortController();
  const stops = [];
  const changes = [];
  const run = runShards({ client, start: recordingShards(stops), signal: controller.signal, log: silent, onClaimChange: (change) => changes.push(change) });
  await until('shard 0 handed over', () => server.requests.some((request) => request.path === '/disconnect'));
  assert.deepEqual(stops.map((stop) => [stop.sessionId, stop.reason]), [['s0', 'handed_over']]);
  // Given back as on SIGTERM: a last beat with the resume data the shard ended with, then /disconnect.
  const last = server.requests.filter((request) => request.body?.session_id === 's0').slice(-2);
  assert.deepEqual(last.map((request) => request.path), ['/beat', '/disconnect']);
  assert.deepEqual(last[0].body.shards[0].resume, { session_id: 'd-s0', sequence: 3, resume_gateway_url: 'wss://r' });
  const beatsOfS1 = () => server.requests.filter((request) => request.path === '/beat' && request.body.session_id === 's1').length;
  const before = beatsOfS1();
  await until('shard 1 beating on', () => beatsOfS1() > before);
  assert.ok(changes.some((change) => change.event === 'released' && change.reason === 'handed_over' && change.shard_ids[0] === 0));
  assert.equal(stops.length, 1, 'shard 1 still runs');
  controller.abort();
  assert.equal(await run, 'shutdown');
});

test('a claim of a group ignores hand_over', async () => {
  const { client, server } = await fake(({ path }) =>
    path === '/connect'
      ? { status: 200, body: connectAnswer({ leaseSeconds: 1.5 }) }
      : { status: 200, body: { shard_id: 0, max_shards: 1, generation: 1, state: 'active', fence: 7, hand_over: true } },
  );
  const controller = new AbortController();
  const stops = [];
  const run = runShards({ client, start: recordingShards(stops), signal: controller.signal, log: silent });
  await until('three beats', () => server.requests.filter((request) => request.path === '/beat').length >= 3);
  assert.deepEqual(stops, []);
  controller.abort();
  assert.equal(await run, 'shutdown');
});

test('placed by load, a retired claim ends alone: the others and the waiting claim go on', async () => {
  const { client, server } = await placingShardman([0, 1], ({ body, count }) => (body.session_id === 's1' && count >= 4 ? { status: 401, body: { detail: 'No Shards Available' } } : { status: 204 }));
  const controller = new AbortController();
  const stops = [];
  const run = runShards({ client, start: recordingShards(stops), signal: controller.signal, log: silent });
  await until('shard 1 retired', () => stops.length === 1);
  assert.deepEqual(stops.map((stop) => [stop.sessionId, stop.reason]), [['s1', 'retired']]);
  const beatsOfS0 = () => server.requests.filter((request) => request.path === '/beat' && request.body.session_id === 's0').length;
  const before = beatsOfS0();
  await until('shard 0 beating on', () => beatsOfS0() > before);
  controller.abort();
  assert.equal(await run, 'shutdown');
  assert.deepEqual(stops.map((stop) => [stop.sessionId, stop.reason]), [['s1', 'retired'], ['s0', 'shutdown']]);
});

test('a beat naming a shard in reconnect reconnects that shard of the claim', async () => {
  const { client } = await fake(({ path, count }) =>
    path === '/connect'
      ? { status: 200, body: connectAnswer({ shardIds: [2, 3], shardCount: 4, leaseSeconds: 1.5 }) }
      : { status: 200, body: { shard_id: 2, max_shards: 4, generation: 1, state: 'active', fence: 7, reconnect: count === 2 ? [3, 9] : [] } },
  );
  const controller = new AbortController();
  const reconnected = [];
  const start = async (context) => ({ ...(await recordingShards([])(context)), reconnect: (shardId) => reconnected.push(shardId) });
  const run = runShards({ client, start, signal: controller.signal, log: silent });
  await until('a reconnect', () => reconnected.length > 0);
  await new Promise((resolve) => setTimeout(resolve, 700));
  controller.abort();
  await run;
  assert.deepEqual(reconnected, [3], 'shard 9 is not the claim\'s');
});
