/**
 * Waits between retries, as clients/contract/backoff.json pins them for all three client packages.
 * Seconds throughout.
 */

/** Every wait is spread by this much either way, so a fleet that failed together retries apart. */
export const JITTER = 0.2;
/** `/connect` answered 401 "No Shards Available": ask again after about this long. */
export const NO_SHARDS_AVAILABLE_RETRY = 1;
/** Requests' backoff: from `baseDelay`, doubling, capped at `maxDelay`. */
export const BACKOFF = Object.freeze({ baseDelay: 0.5, maxDelay: 30 });

/**
 * `seconds` spread by JITTER.
 * @param {number} seconds
 * @param {() => number} [random] a uniform draw in [0, 1]
 */
export function jittered(seconds, random = Math.random) {
  return seconds * (1 - JITTER + 2 * JITTER * random());
}

/**
 * Delay before retry number `attempt` (0-based): exponential backoff from `baseDelay`, jittered, capped at
 * `maxDelay`; a longer `Retry-After` wins.
 * @param {number} attempt
 * @param {number | null} retryAfter seconds
 * @param {{ baseDelay: number, maxDelay: number }} options seconds
 * @param {() => number} [random]
 * @returns {number} seconds
 */
export function retryDelay(attempt, retryAfter, { baseDelay, maxDelay }, random = Math.random) {
  // Past 64 doublings every wait is the cap anyway.
  const wait = Math.min(maxDelay, jittered(baseDelay * 2 ** Math.min(attempt, 64), random));
  return Math.max(wait, retryAfter ?? 0);
}

/**
 * The wait before the next beat after `failures` failed ones in a row (0-based): the backoff capped at
 * `beatInterval`, Retry-After included, because the lease view, not the server, decides when to give up.
 * @param {number} failures
 * @param {number | null} retryAfter seconds
 * @param {number} beatInterval seconds
 * @param {() => number} [random]
 */
export function beatRetryDelay(failures, retryAfter, beatInterval, random = Math.random) {
  return Math.min(beatInterval, retryDelay(failures, retryAfter, { baseDelay: BACKOFF.baseDelay, maxDelay: beatInterval }, random));
}

/** @param {() => number} [random] */
export function noShardsAvailableDelay(random = Math.random) {
  return jittered(NO_SHARDS_AVAILABLE_RETRY, random);
}
