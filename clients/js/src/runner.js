import { setTimeout as sleep } from 'node:timers/promises';
import { CONNECT_WAIT, NO_SHARDS_AVAILABLE_RETRY, beatRetryDelay, jittered } from './backoff.js';
import { NoShardsAvailableError, SessionNotFoundError, SessionRetiredError } from './errors.js';
import { RELEASE_REASONS, claimedEvent, releasedEvent } from './events.js';
import { LeaseView } from './lease.js';
import { IdentifyPacer } from './pacer.js';

/** How long stopping the shards may take before the runner goes on regardless (a gateway that never answers the close). */
const STOP_TIMEOUT_MS = 3000;
/** The last beat and the `/disconnect` of a claim given back each get this long (seconds). */
const GIVE_BACK_TIMEOUT = 2;

/**
 * @param {AbortSignal} signal
 * @param {number} ms
 * @returns {Promise<boolean>} false when aborted first
 */
async function pause(ms, signal) {
  try {
    await sleep(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/**
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 */
function atMost(promise, ms) {
  let timer;
  return Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]).finally(() => clearTimeout(timer));
}

/**
 * Claim, run and release shards, again and again, until a release reason ends the run.
 *
 * For each claim: report "claimed", start the shards through `start(context)`, beat every `beat_interval`
 * from the claim on, and release when the lease view lapses ("lapsed"), a beat or an IDENTIFY permit answers 404
 * ("lost") or 401 ("retired"), on shutdown ("shutdown"), or when the library cannot run the shards
 * ("failed"). Then: stop the shards (close code per reason), give the claim back where the reason says so
 * (a last beat with the shards' resume data, then `/disconnect`), report "released", and claim anew after
 * "lapsed" and "lost". A released claim's session id is never beaten again. When `start` throws, the claim
 * is released as "failed" and the error is thrown after.
 *
 * A claim placed by load (`placement: 'load'`, `SHARDS_PER_PROCESS=auto`) switches to `runPlacedClaims`:
 * as many claims at once as shardman gives, one waiting `/connect` always open.
 *
 * @param {import('./index.js').RunShardsOptions} options
 * @returns {Promise<'retired' | 'shutdown' | 'failed'>}
 */
export async function runShards({ client, start, signal = new AbortController().signal, onClaimChange = () => {}, log = defaultLog, noShardsDelay = NO_SHARDS_AVAILABLE_RETRY, connectWait = CONNECT_WAIT }) {
  // The first request of a process pays for loading and compiling fetch. Paid here, it does not delay
  // the claim and its first IDENTIFY permit.
  await client.request('GET', '/healthz', { signal, timeout: 2 }).catch(() => {});
  for (;;) {
    const claim = await claimShards(client, { signal, log, noShardsDelay, connectWait });
    if (!claim) return 'shutdown';
    if (claim.placement === 'load') return runPlacedClaims(client, claim, { start, signal, onClaimChange, log, noShardsDelay, connectWait });
    onClaimChange(claimedEvent(claim));
    const { reason, error } = await holdClaim(client, claim, { start, signal, log });
    onClaimChange(releasedEvent(claim, reason));
    if (error !== undefined) throw error;
    if (!RELEASE_REASONS[reason].claimsAgain) return /** @type {'retired' | 'shutdown' | 'failed'} */ (reason);
  }
}

/**
 * Placement by load (README "Placing shards by load"): a claim is one shard, and the process runs every
 * claim it is given, each on its own (`start` once per claim), while one `/connect?wait=` stays open for
 * the next (placement moves shards to processes that wait). A claim that ends by itself ("handed_over"
 * after a beat's `hand_over`, "lapsed", "lost", "retired": a reshard's new generation comes through the
 * waiting claim) ends alone; the others and the waiting claim go on, as in the Python and Rust packages.
 * A claim that fails, or a shutdown, ends them all: the other claims are released as "shutdown" (given
 * back for their next holders to RESUME).
 * @param {import('./client.js').ShardmanClient} client
 * @param {import('./index.js').Claim} first
 * @param {{ start: import('./index.js').StartShards, signal: AbortSignal, onClaimChange: (change: import('./index.js').ClaimChange) => void,
 *   log: (message: string) => void, noShardsDelay: number, connectWait: number }} options
 * @returns {Promise<'retired' | 'shutdown' | 'failed'>}
 */
async function runPlacedClaims(client, first, { start, signal, onClaimChange, log, noShardsDelay, connectWait }) {
  const ending = new AbortController();
  const waiting = AbortSignal.any([signal, ending.signal]);
  /** The release of every claim held now. @type {Map<import('./index.js').Claim, (reason: import('./index.js').ReleaseReason) => void>} */
  const held = new Map();
  /** @type {Set<Promise<void>>} */
  const holding = new Set();
  /** @type {{ reason: import('./index.js').ReleaseReason, error?: unknown } | null} */
  let outcome = null;
  /**
   * Ends the run: no more claims, and every claim still held released.
   * @param {{ reason: import('./index.js').ReleaseReason, error?: unknown }} why
   */
  const endRun = (why) => {
    if (outcome) return;
    outcome = why;
    ending.abort(why.reason);
    for (const release of held.values()) release('shutdown');
  };
  /** @param {import('./index.js').Claim} claim */
  const hold = (claim) => {
    onClaimChange(claimedEvent(claim));
    const done = holdClaim(client, claim, { start, signal, log, onHold: (release) => held.set(claim, release) }).then(({ reason, error }) => {
      held.delete(claim);
      onClaimChange(releasedEvent(claim, reason));
      const endsAlone = reason === 'handed_over' || reason === 'retired' || RELEASE_REASONS[reason].claimsAgain;
      if (error !== undefined || !endsAlone) endRun(error === undefined ? { reason } : { reason, error });
    });
    holding.add(done);
    // A rejection (a throwing onClaimChange) reaches the caller through the Promise.all below.
    done.finally(() => holding.delete(done)).catch(() => {});
  };
  hold(first);
  while (!waiting.aborted) {
    let claim;
    try {
      claim = await claimShards(client, { signal: waiting, log, noShardsDelay, connectWait });
    } catch (error) {
      endRun({ reason: 'failed', error });
      break;
    }
    if (!claim) break;
    hold(claim);
  }
  // A shutdown releases each claim through `signal`; an ended run has released them already.
  while (holding.size > 0) await Promise.all(holding);
  if (outcome?.error !== undefined) throw outcome.error;
  const reason = outcome?.reason ?? 'shutdown';
  return /** @type {'retired' | 'shutdown' | 'failed'} */ (reason);
}

/** @param {string} message */
function defaultLog(message) {
  process.stderr.write(`[shardman ${new Date().toISOString()}] ${message}\n`);
}

/**
 * `/connect?wait=connectWait` until it grants a claim: shardman answers as soon as a shard is free (first come first
 * served); 401 "No Shards Available" after the whole wait -> again at once; a 401 that came back before half the wait
 * (a shardman without `wait`, a replica shutting down) -> again after about `noShardsDelay` s (jittered);
 * 429, 5xx and network errors -> exponential backoff honouring Retry-After (in the client); anything else
 * (a wrong secret, an unexpected answer) is thrown: asking again cannot help.
 * @param {import('./client.js').ShardmanClient} client
 * @param {{ signal: AbortSignal, log: (message: string) => void, noShardsDelay: number }} options
 * @returns {Promise<import('./index.js').Claim | null>} null when shut down first
 */
async function claimShards(client, { signal, log, noShardsDelay, connectWait }) {
  let waiting = false;
  while (!signal.aborted) {
    const sentAt = performance.now();
    try {
      return await client.connect({
        wait: connectWait,
        // Each IDENTIFY asks its permit right before it goes out (the pacer): no slot booked in advance.
        identify: 'permit',
        signal,
        attempts: Infinity,
        onRetry: ({ delay, error }) => log(`connect: ${error.message}; again in ${delay.toFixed(2)} s`),
      });
    } catch (error) {
      if (signal.aborted) return null;
      if (!(error instanceof NoShardsAvailableError)) throw error;
      if (!waiting) log('connect: every shard is held; waiting for one');
      waiting = true;
      if (connectWait > 0 && performance.now() - sentAt >= (connectWait * 1000) / 2) continue;
      if (!(await pause(jittered(noShardsDelay) * 1000, signal))) return null;
    }
  }
  return null;
}

/**
 * One claim's life: beats from the claim on, the shards run, and the first release wins.
 * @param {import('./client.js').ShardmanClient} client
 * @param {import('./index.js').Claim} claim
 * @param {{ start: import('./index.js').StartShards, signal: AbortSignal, log: (message: string) => void,
 *   onHold?: (release: (reason: import('./index.js').ReleaseReason) => void) => void }} options `onHold` gets the
 *   claim's release, for a caller that may end it from outside
 * @returns {Promise<{ reason: import('./index.js').ReleaseReason, error?: unknown }>} `error`: what `start` threw
 */
async function holdClaim(client, claim, { start, signal, log, onHold }) {
  const controller = new AbortController();
  /** @type {(reason: import('./index.js').ReleaseReason) => void} */
  let settle = () => {};
  /** @type {Promise<import('./index.js').ReleaseReason>} */
  const released = new Promise((resolve) => (settle = resolve));
  /** @param {import('./index.js').ReleaseReason} reason */
  const release = (reason) => {
    if (controller.signal.aborted) return;
    controller.abort(reason);
    settle(reason);
  };
  const onShutdown = () => release('shutdown');
  signal.addEventListener('abort', onShutdown, { once: true });
  if (signal.aborted) onShutdown();
  onHold?.(release);

  const lease = new LeaseView(claim);
  lease.watch(() => release('lapsed'));
  log(
    `claimed shards [${claim.shardIds.join(', ')}] of ${claim.shardCount}, generation ${claim.generation}, ${claim.state}; ` +
      `lease ${claim.leaseSeconds} s, beat every ${claim.beatInterval} s`,
  );

  /** @type {import('./index.js').ClaimContext} */
  const context = {
    claim,
    client,
    lease,
    signal: controller.signal,
    release,
    log,
    throttler: new IdentifyPacer(client, claim, { signal: controller.signal, release, log }),
  };
  /** @type {import('./index.js').RunningShards | null} */
  let running = null;
  const reports = () => running?.report() ?? claim.shardIds.map((shardId) => ({ shardId }));
  /** @param {number} shardId */
  const reconnect = (shardId) => {
    log(`shard ${shardId}: shardman asks to reconnect it; RESUME`);
    Promise.resolve(running?.reconnect?.(shardId)).catch((error) => log(`shard ${shardId}: reconnect: ${error}`));
  };
  const beating = beatLoop(client, claim, { lease, release, signal: controller.signal, reports, reconnect, log });

  let error;
  try {
    running = await start(context);
  } catch (thrown) {
    error = thrown;
    release('failed');
  }
  const reason = await released;
  signal.removeEventListener('abort', onShutdown);
  lease.stop();
  log(`releasing shards [${claim.shardIds.join(', ')}]: ${reason}`);
  // Stop the shards at once: whatever ended the claim, nobody may rely on them now.
  const stopped = running ? atMost(Promise.resolve(running.stop(reason)).catch((stopError) => log(`stopping shards: ${stopError}`)), STOP_TIMEOUT_MS) : null;
  // An aborted beat ends at once; it may not follow the last one.
  await beating;
  // Checked again after the close: a lapsed lease is never beaten nor disconnected.
  const givesBack = () => RELEASE_REASONS[reason].givesBack && !lease.expired();
  // Hand the freshest resume data over (shardman keeps it for the next holder). Where no dispatch
  // reaches the bot once `stop` was called (`finalOnStop`), the reports are final already and the
  // last beat goes out while the shards close; otherwise once they are closed.
  // Retried: a last beat lost to a connection error would leave the next holder the previous beat's
  // sequence, and events handled twice.
  const lastBeat = () => client.beat(claim.sessionId, reports(), { timeout: GIVE_BACK_TIMEOUT, attempts: 3 }).catch((beatError) => log(`last beat: ${beatError.message}`));
  const beatenEarly = running?.finalOnStop && givesBack() ? lastBeat() : null;
  await stopped;
  if (givesBack()) {
    await (beatenEarly ?? lastBeat());
    // Only once the shards are closed: the next holder's RESUME never meets a live connection.
    await client.disconnect(claim.sessionId, { timeout: GIVE_BACK_TIMEOUT }).catch((disconnectError) => log(`disconnect: ${disconnectError.message}`));
  }
  return error === undefined ? { reason } : { reason, error };
}

/**
 * Beat every `beat_interval` from the claim on; after a failed beat the next follows sooner (backoff capped
 * at the interval); never beat once the lease view has lapsed, which decides when the claim is gone.
 * Acts on what a beat answers: `hand_over` (placement by load only) releases the claim as "handed_over";
 * each of the claim's shards in `reconnect` is reconnected, RESUME first.
 * @param {import('./client.js').ShardmanClient} client
 * @param {import('./index.js').Claim} claim
 * @param {{ lease: LeaseView, release: (reason: import('./index.js').ReleaseReason) => void, signal: AbortSignal,
 *   reports: () => import('./index.js').ShardReport[], reconnect: (shardId: number) => void, log: (message: string) => void }} options
 */
async function beatLoop(client, claim, { lease, release, signal, reports, reconnect, log }) {
  let state = claim.state;
  let failures = 0;
  while (!signal.aborted) {
    if (lease.expired()) {
      release('lapsed');
      return;
    }
    let wait;
    try {
      const answer = await client.beat(claim.sessionId, reports(), {
        signal,
        timeout: Math.max(0.5, Math.min(claim.beatInterval, lease.remaining() / 1000)),
      });
      if (signal.aborted) return;
      lease.acknowledge(answer.sentAt);
      failures = 0;
      if (answer.state && answer.state !== state) {
        log(`generation ${answer.generation ?? claim.generation} is now ${answer.state} (was ${state})`);
        state = answer.state;
      }
      if (answer.handOver && claim.placement === 'load') {
        log(`placement moves shards [${claim.shardIds.join(', ')}] to another process; handing over`);
        return release('handed_over');
      }
      for (const shardId of answer.reconnect) if (claim.shardIds.includes(shardId)) reconnect(shardId);
      wait = answer.sentAt + claim.beatInterval * 1000 - performance.now();
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof SessionNotFoundError) return release('lost');
      if (error instanceof SessionRetiredError) return release('retired');
      const retryAfter = /** @type {any} */ (error).retryAfter ?? null;
      wait = beatRetryDelay(failures++, retryAfter, claim.beatInterval) * 1000;
      log(`beat: ${error instanceof Error ? error.message : error}; next in ${(wait / 1000).toFixed(2)} s`);
    }
    if (!(await pause(Math.max(0, wait), signal))) return;
  }
}

/**
 * An AbortSignal that aborts on the first of `signals` (SIGTERM and SIGINT by default), for `runShards`.
 * @param {NodeJS.Signals[]} [signals]
 */
export function shutdownSignal(signals = ['SIGTERM', 'SIGINT']) {
  const controller = new AbortController();
  for (const name of signals) process.once(name, () => controller.abort(name));
  return controller.signal;
}
