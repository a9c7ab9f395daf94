// This package against the shared contract vectors of clients/contract (the Python and Rust packages load
// the same files), so the three cannot drift apart.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  BACKOFF,
  CONNECT_WAIT,
  InvalidSecretError,
  JITTER,
  LAPSE_CHECK_EVERY_MS,
  LeaseView,
  NoShardsAvailableError,
  RELEASE_REASONS,
  SessionNotFoundError,
  SessionRetiredError,
  ShardmanError,
  ShardmanUnavailableError,
  beatRetryDelay,
  claimedEvent,
  decodeAnswer,
  noShardsAvailableDelay,
  releasedEvent,
  retryDelay,
} from 'shardman-client';

const vectors = (name) => JSON.parse(readFileSync(new URL(`../../contract/${name}`, import.meta.url), 'utf8'));
const answers = vectors('answers.json');
const backoff = vectors('backoff.json');
const lease = vectors('lease.json');
const events = vectors('claim_events.json');

const errorKinds = {
  no_shards_available: NoShardsAvailableError,
  retired: SessionRetiredError,
  session_lost: SessionNotFoundError,
  bad_secret: InvalidSecretError,
  unavailable: ShardmanUnavailableError,
  unexpected: ShardmanError,
};

/** The contract's snake_case view of a decoded claim. */
function claimFields(claim) {
  return {
    session_id: claim.sessionId,
    shard_ids: claim.shardIds,
    shard_count: claim.shardCount,
    generation: claim.generation,
    state: claim.state,
    fence: claim.fence,
    sleep_durations: claim.sleepDurations,
    resumes: claim.resumes.map((resume) => resume && { session_id: resume.sessionId, sequence: resume.sequence, resume_gateway_url: resume.resumeGatewayUrl }),
    lease_seconds: claim.leaseSeconds,
    beat_interval: claim.beatInterval,
    gateway_url: claim.gatewayUrl,
    placement: claim.placement,
    // The answer was sent at 0.
    lease_counts_from: claim.sentAt / 1000,
  };
}

for (const spec of answers.cases) {
  test(`answers: ${spec.name}`, () => {
    const answer = { status: spec.status, body: spec.body, retryAfter: spec.retry_after ?? null };
    const { expect } = spec;
    if (expect.error) {
      assert.throws(
        () => decodeAnswer(spec.route, answer),
        (error) => {
          assert.equal(error.constructor, errorKinds[expect.error]);
          assert.equal(error.status, spec.status);
          if ('retry_after' in expect) assert.equal(error.retryAfter, expect.retry_after);
          return true;
        },
      );
      return;
    }
    const decoded = decodeAnswer(spec.route, answer);
    if (expect.claim) {
      const fields = claimFields(decoded);
      assert.deepEqual(Object.fromEntries(Object.keys(expect.claim).map((key) => [key, fields[key]])), expect.claim);
    } else if ('beat' in expect) {
      const got = { shard_id: decoded.shardId, shard_count: decoded.shardCount, generation: decoded.generation, state: decoded.state, fence: decoded.fence, hand_over: decoded.handOver, reconnect: decoded.reconnect };
      // The contract lists hand_over and reconnect only where the answer had them; without, they are false and [].
      const wanted = { shard_id: null, shard_count: null, generation: null, state: null, fence: null, hand_over: false, reconnect: [], ...expect.beat };
      assert.deepEqual(got, wanted);
    } else if ('sleep_duration' in expect) {
      assert.equal(decoded.sleepDuration, expect.sleep_duration);
    } else if (expect.permit) {
      assert.deepEqual({ granted: decoded.granted, shard_id: decoded.shardId, retry_after: decoded.retryAfter }, expect.permit);
    } else if ('confirmed' in expect) {
      assert.equal(decoded, expect.confirmed);
    } else {
      assert.deepEqual(expect, { ok: true });
      assert.equal(decoded, true);
    }
  });
}

/** `wait(random)` at the extremes of the draw is the contract's bounds, and in between stays within. */
function assertBounds(wait, least, most) {
  const close = (a, b) => Math.abs(a - b) < 1e-9;
  assert.ok(close(wait(() => 0), least), `${wait(() => 0)} at the least, want ${least}`);
  assert.ok(close(wait(() => 1), most), `${wait(() => 1)} at the most, want ${most}`);
  for (const draw of [0.1, 0.5, 0.9]) {
    const value = wait(() => draw);
    assert.ok(value >= least - 1e-9 && value <= most + 1e-9, `${value} outside [${least}, ${most}]`);
  }
}

test('backoff: the parameters are the contract\'s', () => {
  assert.deepEqual(
    { initial: BACKOFF.baseDelay, cap: BACKOFF.maxDelay, jitter: JITTER, factor: retryDelay(1, null, { baseDelay: 1, maxDelay: 100 }, () => 0.5) },
    { initial: backoff.initial_seconds, cap: backoff.cap_seconds, jitter: backoff.jitter, factor: backoff.factor },
  );
});

for (const spec of backoff.requests.cases) {
  test(`backoff: request retry ${JSON.stringify(spec)}`, () => {
    assertBounds((random) => retryDelay(spec.attempt, spec.retry_after, BACKOFF, random), spec.least, spec.most);
  });
}

for (const spec of backoff.beats.cases) {
  test(`backoff: beat after failures ${JSON.stringify(spec)}`, () => {
    assertBounds((random) => beatRetryDelay(spec.failures, spec.retry_after, spec.beat_interval, random), spec.least, spec.most);
  });
}

test('backoff: "No Shards Available" is asked again as the contract says', () => {
  const spec = backoff.no_shards_available;
  assert.equal(CONNECT_WAIT, spec.connect_wait_seconds);
  assertBounds((random) => noShardsAvailableDelay(random), spec.least, spec.most);
});

for (const spec of lease.cases) {
  test(`lease view: ${spec.name}`, () => {
    let now = spec.claim.requested_at * 1000;
    const view = new LeaseView(
      { sentAt: spec.claim.requested_at * 1000, sleepDurations: spec.claim.sleep_durations, leaseSeconds: spec.claim.lease_seconds },
      { now: () => now },
    );
    for (const step of spec.steps) {
      now = step.at * 1000;
      if (step.acknowledge) view.acknowledge(step.acknowledge.sent_at * 1000);
      if ('deadline' in step) assert.ok(Math.abs(view.deadline - step.deadline * 1000) < 1e-6, `deadline ${view.deadline} at ${step.at}`);
      if ('lapsed' in step) assert.equal(view.expired(), step.lapsed, `lapsed at ${step.at}`);
    }
  });
}

test('lease view: the lapse is checked as often as the contract says', () => {
  assert.equal(LAPSE_CHECK_EVERY_MS, lease.lapse_check_every_seconds * 1000);
});

test('release reasons: the contract\'s list, doing what it says', () => {
  assert.deepEqual(Object.keys(RELEASE_REASONS), events.reasons.map((spec) => spec.reason));
  for (const spec of events.reasons) {
    assert.deepEqual(RELEASE_REASONS[spec.reason], { claimsAgain: spec.claims_again, givesBack: spec.gives_back, closeCode: spec.close_code, exitCode: spec.exit_code }, spec.reason);
  }
});

for (const spec of events.cases) {
  test(`claim event lines for ${JSON.stringify(spec.claimed)}`, () => {
    const claim = decodeAnswer('connect', { status: 200, body: spec.connect_answer });
    assert.deepEqual(JSON.parse(JSON.stringify(claimedEvent(claim))), spec.claimed);
    for (const reason of Object.keys(RELEASE_REASONS)) {
      assert.deepEqual(JSON.parse(JSON.stringify(releasedEvent(claim, reason))), { ...spec.released, reason });
    }
  });
}
