/**
 * Why a claim ends, and the JSON lines that report claim changes (clients/contract/claim_events.json).
 */

/** Closing a gateway connection with this code keeps its Discord session resumable (1000 and 1001 end it). */
export const RESUMABLE_CLOSE = 4000;
/** Closing with this code ends the Discord session. */
export const FINAL_CLOSE = 1000;

/**
 * The release reasons all three client packages share, in the contract's order, with what each does:
 * claim anew or end the run, give the claim back (a last beat with resume data, then `/disconnect`),
 * the shards' close code, the example bot's exit code when the run ends.
 * @type {Readonly<Record<import('./index.js').ReleaseReason, { claimsAgain: boolean, givesBack: boolean, closeCode: number, exitCode: number | null }>>}
 */
export const RELEASE_REASONS = Object.freeze({
  /** The process's own lease view ran out; that session id is never used again. */
  lapsed: { claimsAgain: true, givesBack: false, closeCode: RESUMABLE_CLOSE, exitCode: null },
  /** A beat or `/identify` answered 404: shardman no longer knows the session. */
  lost: { claimsAgain: true, givesBack: false, closeCode: RESUMABLE_CLOSE, exitCode: null },
  /** A beat or `/identify` answered 401: a reshard replaced the session's generation; exit. */
  retired: { claimsAgain: false, givesBack: false, closeCode: FINAL_CLOSE, exitCode: 0 },
  /** SIGTERM/SIGINT (the signal), or the bot closed its client itself. */
  shutdown: { claimsAgain: false, givesBack: true, closeCode: RESUMABLE_CLOSE, exitCode: 0 },
  /** The bot library cannot run the shards (a bad token, a close code that forbids reconnecting, a failed start). */
  failed: { claimsAgain: false, givesBack: true, closeCode: RESUMABLE_CLOSE, exitCode: 1 },
  /**
   * A beat answered `hand_over` (placement by load): the shard moves to another process, which RESUMEs
   * it. Only this claim ends; the process's other claims and its waiting claim go on.
   */
  handed_over: { claimsAgain: false, givesBack: true, closeCode: RESUMABLE_CLOSE, exitCode: null },
});

/**
 * @param {import('./index.js').Claim} claim
 * @returns {import('./index.js').ClaimChange}
 */
export function claimedEvent(claim) {
  return { event: 'claimed', shard_ids: claim.shardIds, shard_count: claim.shardCount, generation: claim.generation, state: claim.state };
}

/**
 * @param {import('./index.js').Claim} claim
 * @param {import('./index.js').ReleaseReason} reason
 * @returns {import('./index.js').ClaimChange}
 */
export function releasedEvent(claim, reason) {
  return { event: 'released', shard_ids: claim.shardIds, shard_count: claim.shardCount, generation: claim.generation, reason };
}
