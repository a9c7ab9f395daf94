/**
 * Errors the shardman HTTP API answers, one class per thing a bot must do differently.
 */

/** Any answer of shardman that is not a success. */
export class ShardmanError extends Error {
  /**
   * @param {string} message
   * @param {{ status?: number, detail?: unknown, retryAfter?: number | null, cause?: unknown }} [info]
   */
  constructor(message, { status, detail, retryAfter = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** HTTP status, if shardman answered at all. */
    this.status = status;
    /** The `detail` of shardman's JSON error body. */
    this.detail = detail;
    /** Seconds the answer asked to wait (`Retry-After`), if any. */
    this.retryAfter = retryAfter;
  }
}

/** 401 on `/connect`: every shard id (group) is held; ask again a little later. */
export class NoShardsAvailableError extends ShardmanError {}

/** 401 on `/beat` or `/identify`: this session's generation was retired (a reshard finished); stop and exit. */
export class SessionRetiredError extends ShardmanError {}

/** 404 on `/beat`, `/identify` or `/disconnect`: the session is unknown, expired or released; stop, claim anew. */
export class SessionNotFoundError extends ShardmanError {}

/** 403: shardman does not accept the secret. Nothing but a configuration change helps. */
export class InvalidSecretError extends ShardmanError {}

/** 503 or 429 that outlasted the retries (or a network error), so the call gave up. */
export class ShardmanUnavailableError extends ShardmanError {}
