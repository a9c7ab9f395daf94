import { setTimeout as sleep } from 'node:timers/promises';
import { jittered } from './backoff.js';
import { PERMIT_WAIT } from './client.js';
import { SessionNotFoundError, SessionRetiredError } from './errors.js';

/**
 * Waits until `signal` aborts, never resolving before. Used where the library must not go on (a
 * released claim): @discordjs/ws reconnects when `waitForIdentify` throws, but returns quietly once the
 * shard's own signal is aborted, which its close does.
 * @param {AbortSignal} signal
 * @returns {Promise<never>}
 */
function untilAborted(signal) {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/**
 * IDENTIFY pacing for one claim by permits (README "When to IDENTIFY: slots or permits"), shaped as
 * @discordjs/ws's IIdentifyThrottler (`waitForIdentify(shardId, signal)`), so it serves discord.js 14
 * (`ws.buildIdentifyThrottler`) and @discordjs/ws 1 and 2 alike. The library awaits it right before it
 * writes the IDENTIFY, so the permit is asked as late as the library allows.
 *
 * - Every IDENTIFY of a shard (the first, and any after an invalid session or a failed RESUME) asks
 *   `POST /identify/permit` until granted; shardman holds each ask up to `permitWait` s until the shard's
 *   bucket is open. A refusal that came back well before the wait (a replica shutting down) is asked
 *   again after its `retry_after`.
 * - `identifySent(shardId)`, which the adapters call on the shard's READY, confirms the permit, so the
 *   bucket opens 5 s after the confirm rather than 8.1 s after the grant. READY, not the moment the
 *   IDENTIFY is written: a confirm sent then can reach shardman before the IDENTIFY reaches the gateway
 *   (seen: 160 to 310 ms, on a loaded machine), and the bucket's next IDENTIFY came within 5 s of it at
 *   the gateway. READY proves the gateway had it. An IDENTIFY answered without READY (op 9) is never
 *   confirmed: its bucket opens 8.1 s after the grant.
 * - 404/401 from either route release the claim ("lost"/"retired").
 */
export class IdentifyPacer {
  /**
   * @param {import('./client.js').ShardmanClient} client
   * @param {import('./index.js').Claim} claim
   * @param {{ signal: AbortSignal, release: (reason: import('./index.js').ReleaseReason) => void,
   *   log?: (message: string) => void, permitWait?: number }} options `permitWait`: seconds each
   *   `/identify/permit` may wait for the bucket
   */
  constructor(client, claim, { signal, release, log = () => {}, permitWait = PERMIT_WAIT }) {
    this.client = client;
    this.claim = claim;
    this.signal = signal;
    this.release = release;
    this.log = log;
    this.permitWait = permitWait;
    /** Shard ids granted a permit whose IDENTIFY is not confirmed yet. */
    this.unconfirmed = new Set();
  }

  /**
   * Resolves when `shardId` may send IDENTIFY: its permit was granted.
   * @param {number} shardId
   * @param {AbortSignal} [signal] the shard's: aborted when its connection closes
   */
  async waitForIdentify(shardId, signal) {
    const { claim } = this;
    if (!claim.shardIds.includes(shardId)) throw new RangeError(`shard ${shardId} is not part of this claim (${claim.shardIds.join(', ')})`);
    const shardSignal = signal ?? new AbortController().signal;
    const both = AbortSignal.any([shardSignal, this.signal]);
    try {
      await this.#permit(shardId, both);
    } catch (error) {
      if (!this.#released(error) && !both.aborted) throw error;
      return untilAborted(shardSignal);
    }
    if (this.signal.aborted) return untilAborted(shardSignal);
    this.unconfirmed.add(shardId);
  }

  /**
   * Discord has the IDENTIFY of `shardId` (its READY came): confirm its permit. Only the first call after
   * a grant confirms; any other (a READY after a RESUME, say) does nothing.
   * @param {number} shardId
   */
  async identifySent(shardId) {
    if (!this.unconfirmed.delete(shardId) || this.signal.aborted) return;
    try {
      const confirmed = await this.client.identifyConfirm(this.claim.sessionId, shardId, { signal: this.signal, attempts: 3 });
      // Not confirmed: the permit was confirmed already, or so late the bucket was granted since.
      if (!confirmed) this.log(`shard ${shardId}: IDENTIFY permit not confirmed (late)`);
    } catch (error) {
      // Unconfirmed, the bucket still opens 8.1 s after the grant: later, never too early.
      if (!this.#released(error) && !this.signal.aborted) this.log(`shard ${shardId}: confirm: ${error instanceof Error ? error.message : error}`);
    }
  }

  /**
   * @param {number} shardId
   * @param {AbortSignal} signal
   */
  async #permit(shardId, signal) {
    const wait = this.permitWait;
    for (;;) {
      const askedAt = performance.now();
      const permit = await this.client.identifyPermit(this.claim.sessionId, shardId, {
        wait,
        signal,
        attempts: Infinity,
        onRetry: ({ delay, error }) => this.log(`shard ${shardId}: permit: ${error.message}; again in ${delay.toFixed(2)} s`),
      });
      if (permit.granted) {
        this.log(`shard ${shardId}: IDENTIFY permitted after ${((performance.now() - askedAt) / 1000).toFixed(2)} s`);
        return;
      }
      // A full wait without a grant: shardman waits again at once. A refusal that came back sooner must
      // not turn into a busy loop.
      if (performance.now() - askedAt < (wait * 1000) / 2) {
        await sleep(jittered(Math.min(Math.max(permit.retryAfter ?? 1, 0.1), wait)) * 1000, undefined, { signal });
      }
    }
  }

  /**
   * Releases the claim for a 404 ("lost") or 401 ("retired"); whether it did.
   * @param {unknown} error
   */
  #released(error) {
    if (error instanceof SessionNotFoundError) this.release('lost');
    else if (error instanceof SessionRetiredError) this.release('retired');
    else return false;
    return true;
  }
}
