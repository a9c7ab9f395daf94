/**
 * Besides a timer at the deadline, the lapse is checked at least this often (ms), so a process woken from
 * SIGSTOP past its deadline notices within it (clients/contract/lease.json).
 */
export const LAPSE_CHECK_EVERY_MS = 200;

/**
 * The bot's own view of its lease, exactly as shardman's contract defines it:
 * - before the first acknowledged beat: the `/connect` request's send time + max(sleep_durations) + lease_seconds
 *   (the first lease covers the wait for the IDENTIFY slot);
 * - after it: the send time of the last beat that got 200/204 + lease_seconds.
 * Once lapsed, always lapsed: an answer arriving after the deadline cannot revive it.
 * Times are `performance.now()` milliseconds (monotonic).
 */
export class LeaseView {
  /**
   * @param {{ sentAt: number, sleepDurations: number[], leaseSeconds: number }} claim
   * @param {{ now?: () => number, checkEvery?: number }} [options]
   */
  constructor(claim, { now = () => performance.now(), checkEvery = LAPSE_CHECK_EVERY_MS } = {}) {
    this.leaseMs = claim.leaseSeconds * 1000;
    this.deadline = claim.sentAt + Math.max(0, ...claim.sleepDurations) * 1000 + this.leaseMs;
    this.now = now;
    this.checkEvery = checkEvery;
    /** @type {NodeJS.Timeout | null} */
    this.timer = null;
    /** @type {NodeJS.Timeout | null} */
    this.poll = null;
    this.lapsed = false;
  }

  /** Milliseconds left (negative once lapsed). */
  remaining() {
    return this.deadline - this.now();
  }

  /** Whether the lease view has run out. Checked before every beat, so no beat goes out on a lapsed session. */
  expired() {
    return this.lapsed || this.remaining() <= 0;
  }

  /**
   * A beat sent at `sentAt` was acknowledged (200/204), and the answer arrived just now.
   * @param {number} sentAt
   */
  acknowledge(sentAt) {
    if (this.expired()) return; // never trust that session id again
    this.deadline = sentAt + this.leaseMs;
    this.#arm();
  }

  /**
   * Call `onLapse` once, as soon as the deadline passes. Besides a timer at the deadline, a short poll
   * re-checks, so a process woken from SIGSTOP notices within `checkEvery` ms whichever timer fires first.
   * @param {() => void} onLapse
   */
  watch(onLapse) {
    this.onLapse = onLapse;
    this.#arm();
    this.poll = setInterval(() => this.#check(), this.checkEvery);
  }

  stop() {
    if (this.timer) clearTimeout(this.timer);
    if (this.poll) clearInterval(this.poll);
    this.timer = null;
    this.poll = null;
  }

  #arm() {
    if (!this.onLapse) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.#check(), Math.max(0, this.remaining()));
  }

  #check() {
    if (this.lapsed || this.remaining() > 0) return;
    this.lapsed = true;
    this.stop();
    this.onLapse?.();
  }
}
