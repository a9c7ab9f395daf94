import { setTimeout as sleep } from 'node:timers/promises';
import { retryDelay } from './client.js';
import {
  InvalidSecretError,
  NoShardsAvailableError,
  SessionNotFoundError,
  SessionRetiredError,
} from './errors.js';
import { LeaseView } from './lease.js';
import { IdentifyPacer } from './pacer.js';

/** How long stopping the shards may take before the runner goes on regardless (a gateway that never answers the close). */
const STOP_TIMEOUT_MS = 3000;

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
 * Claim, run and release shards until `signal` aborts (shutdown) or a beat answers 401 (retired).
 *
 * For each claim: print "claimed", start the shards through `start(context)`, beat every `beat_interval`
 * from the claim on, and release when the lease view lapses ("lapsed"), a beat answers 404 ("lost") or
 * 401 ("retired"), or on shutdown ("shutdown": close the gateway, a last beat with resume data, then
 * `/disconnect`). A released claim's session id is never beaten again; the next claim is a new `/connect`.
 *
 * @param {import('./index.js').RunShardsOptions} options
 * @returns {Promise<'retired' | 'shutdown'>}
 */
export async function runShards({ client, start, signal = new AbortController().signal, onClaimChange = () => {}, log = defaultLog, noShardsDelay = 1, identifyMargin = 1 }) {
  // The first request of a process pays for loading and compiling fetch. Paid here, it does not delay
  // the /connect answer, whose arrival times the first IDENTIFY slot.
  await client.request('GET', '/healthz', { attempts: 1, signal, timeout: 2 }).catch(() => {});
  for (;;) {
    const claim = await claimShards(client, { signal, log, noShardsDelay });
    if (!claim) return 'shutdown';
    onClaimChange({ event: 'claimed', shard_ids: claim.shardIds, shard_count: claim.shardCount, generation: claim.generation, state: claim.state });
    const reason = await holdClaim(client, claim, { start, signal, log, identifyMargin });
    onClaimChange({ event: 'released', shard_ids: claim.shardIds, shard_count: claim.shardCount, generation: claim.generation, reason });
    if (reason === 'retired' || reason === 'shutdown') return reason;
  }
}

/** @param {string} message */
function defaultLog(message) {
  process.stderr.write(`[shardman ${new Date().toISOString()}] ${message}\n`);
}

/**
 * `/connect` until it grants a claim: 401 "No Shards Available" -> again after ~`noShardsDelay` s (with
 * jitter); 503/429 and network errors -> exponential backoff honouring Retry-After (in the client).
 * @param {import('./client.js').ShardmanClient} client
 * @param {{ signal: AbortSignal, log: (message: string) => void, noShardsDelay: number }} options
 * @returns {Promise<import('./index.js').Claim | null>} null when shut down first
 */
async function claimShards(client, { signal, log, noShardsDelay }) {
  let failures = 0;
  let waiting = false;
  while (!signal.aborted) {
    try {
      return await client.connect({
        signal,
        attempts: Infinity,
        onRetry: ({ delay, error }) => log(`connect: ${error.message}; again in ${delay.toFixed(2)} s`),
      });
    } catch (error) {
      if (signal.aborted) return null;
      if (error instanceof InvalidSecretError) throw error;
      let delay;
      if (error instanceof NoShardsAvailableError) {
        if (!waiting) log('connect: every shard is held; asking again every second');
        waiting = true;
        delay = noShardsDelay * (0.8 + Math.random() * 0.4);
      } else {
        log(`connect: ${error instanceof Error ? error.message : error}`);
        delay = retryDelay(failures++, null, { baseDelay: 0.5, maxDelay: 30 });
      }
      if (!(await pause(delay * 1000, signal))) return null;
    }
  }
  return null;
}

/**
 * @param {import('./client.js').ShardmanClient} client
 * @param {import('./index.js').Claim} claim
 * @param {{ start: import('./index.js').StartShards, signal: AbortSignal, log: (message: string) => void, identifyMargin: number }} options
 * @returns {Promise<import('./index.js').ReleaseReason>}
 */
async function holdClaim(client, claim, { start, signal, log, identifyMargin }) {
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
    throttler: new IdentifyPacer(client, claim, { signal: controller.signal, release, log, margin: identifyMargin }),
  };
  /** @type {import('./index.js').RunningShards | null} */
  let running = null;
  const reports = () => running?.report() ?? claim.shardIds.map((shardId) => ({ shardId }));
  const beating = beatLoop(client, claim, { lease, release, signal: controller.signal, reports, log });

  try {
    running = await start(context);
  } catch (error) {
    signal.removeEventListener('abort', onShutdown);
    release('shutdown');
    lease.stop();
    await beating;
    await client.disconnect(claim.sessionId).catch(() => {});
    throw error;
  }

  const reason = await released;
  signal.removeEventListener('abort', onShutdown);
  lease.stop();
  const lastReports = reason === 'shutdown' ? reports() : null;
  log(`releasing shards [${claim.shardIds.join(', ')}]: ${reason}`);
  await atMost(Promise.resolve(running.stop(reason)).catch((error) => log(`stopping shards: ${error}`)), STOP_TIMEOUT_MS);
  await beating;
  if (lastReports && !lease.expired()) {
    // Hand the freshest resume data over before giving the shards back (shardman keeps it for the next holder).
    await client.beat(claim.sessionId, lastReports, { timeout: 2 }).catch(() => {});
    await client.disconnect(claim.sessionId, { timeout: 2 }).catch((error) => log(`disconnect: ${error.message}`));
  }
  return reason;
}

/**
 * Beat every `beat_interval` until the claim is released; never beat once the lease view has lapsed.
 * @param {import('./client.js').ShardmanClient} client
 * @param {import('./index.js').Claim} claim
 * @param {{ lease: LeaseView, release: (reason: import('./index.js').ReleaseReason) => void, signal: AbortSignal,
 *   reports: () => import('./index.js').ShardReport[], log: (message: string) => void }} options
 */
async function beatLoop(client, claim, { lease, release, signal, reports, log }) {
  let state = claim.state;
  let failures = 0;
  while (!signal.aborted) {
    if (lease.expired()) {
      release('lapsed');
      return;
    }
    let delay = claim.beatInterval;
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
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof SessionNotFoundError) return release('lost');
      if (error instanceof SessionRetiredError) return release('retired');
      log(`beat: ${error instanceof Error ? error.message : error}`);
      const retryAfter = /** @type {any} */ (error).retryAfter ?? null;
      delay = Math.min(claim.beatInterval, retryDelay(failures++, retryAfter, { baseDelay: 0.25, maxDelay: claim.beatInterval }));
    }
    if (!(await pause(delay * 1000, signal))) return;
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
