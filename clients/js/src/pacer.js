import { setTimeout as sleep } from 'node:timers/promises';
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
 * IDENTIFY pacing for one claim, shaped as @discordjs/ws's IIdentifyThrottler (`waitForIdentify(shardId,
 * signal)`), so it serves discord.js 14 (`ws.buildIdentifyThrottler`) and @discordjs/ws 1 and 2 alike.
 *
 * - The first IDENTIFY of a shard waits the `sleep_durations[i]` `/connect` answered (from its arrival).
 * - Any later IDENTIFY of that shard (invalid session, reconnect without resume) first books a slot with
 *   `POST /identify` and waits its `sleep_duration`. So does the first one of a shard whose claim came with
 *   resume data: its `sleep_duration` was 0 because no slot was booked, so a failed RESUME needs one.
 * - 404/401 from `/identify` release the claim ("lost"/"retired").
 * - Every wait ends `margin` seconds after the slot (see below). A shard that only gets to its first
 *   IDENTIFY more than `lateTolerance` after that (a loaded machine, a slow connect) has missed its slot:
 *   identifying then would come within 5 s of the bucket's next slot, so it books a new one instead.
 */
export class IdentifyPacer {
  /**
   * @param {import('./client.js').ShardmanClient} client
   * @param {import('./index.js').Claim} claim
   * @param {{ signal: AbortSignal, release: (reason: import('./index.js').ReleaseReason) => void,
   *   log?: (message: string) => void, margin?: number, lateTolerance?: number }} options `margin`: seconds
   *   added to every wait; `lateTolerance`: seconds past slot + margin after which a first slot counts as missed
   */
  constructor(client, claim, { signal, release, log = () => {}, margin = 1, lateTolerance = 0.15 }) {
    this.margin = margin;
    this.lateTolerance = lateTolerance;
    this.client = client;
    this.claim = claim;
    this.signal = signal;
    this.release = release;
    this.log = log;
    /** Shard ids that have used their first slot. */
    this.identified = new Set();
  }

  /**
   * Resolves when `shardId` may send IDENTIFY.
   * @param {number} shardId
   * @param {AbortSignal} [signal] the shard's: aborted when its connection closes
   */
  async waitForIdentify(shardId, signal) {
    const { claim } = this;
    const index = claim.shardIds.indexOf(shardId);
    if (index === -1) throw new RangeError(`shard ${shardId} is not part of this claim (${claim.shardIds.join(', ')})`);
    const shardSignal = signal ?? new AbortController().signal;
    const both = AbortSignal.any([shardSignal, this.signal]);
    let until = null;
    if (!this.identified.has(shardId) && claim.resumes[index] == null) {
      this.identified.add(shardId);
      until = claim.receivedAt + claim.sleepDurations[index] * 1000;
      const late = performance.now() - (until + this.margin * 1000);
      if (late > this.lateTolerance * 1000) {
        // Identifying now would bring the bucket's next slot (6 s after this one) within Discord's 5 s.
        this.log(`shard ${shardId}: ready ${(late / 1000).toFixed(2)} s after its IDENTIFY slot; booking a new one`);
        until = null;
      }
    }
    this.identified.add(shardId);
    if (until === null) {
      try {
        const slot = await this.client.identify(claim.sessionId, shardId, { signal: both, attempts: Infinity });
        until = slot.receivedAt + slot.sleepDuration * 1000;
      } catch (error) {
        if (error instanceof SessionNotFoundError) this.release('lost');
        else if (error instanceof SessionRetiredError) this.release('retired');
        else if (!both.aborted) throw error;
        return untilAborted(shardSignal);
      }
    }
    // A slot is the earliest moment, and shardman spaces a bucket's slots only 6 s apart: a shard that
    // identifies late on its slot (a sleep of 0 still has to connect first) shortens the gap to the next
    // shard's slot. The margin keeps every shard equally late, so the gaps stay 6 s.
    const wait = Math.max(0, until + this.margin * 1000 - performance.now());
    this.log(`shard ${shardId}: IDENTIFY in ${(wait / 1000).toFixed(2)} s`);
    try {
      await sleep(wait, undefined, { signal: both });
    } catch {
      return untilAborted(shardSignal);
    }
    if (this.signal.aborted) return untilAborted(shardSignal);
  }
}
