export { BACKOFF, CONNECT_WAIT, JITTER, NO_SHARDS_AVAILABLE_RETRY, beatRetryDelay, jittered, noShardsAvailableDelay, retryDelay } from './backoff.js';
export { PERMIT_WAIT, ShardmanClient, beatBody, claimFromWire, decodeAnswer, parseRetryAfter } from './client.js';
export {
  InvalidSecretError,
  NoShardsAvailableError,
  SessionNotFoundError,
  SessionRetiredError,
  ShardmanError,
  ShardmanUnavailableError,
} from './errors.js';
export { FINAL_CLOSE, RELEASE_REASONS, RESUMABLE_CLOSE, claimedEvent, releasedEvent } from './events.js';
export { GuildTracker } from './guilds.js';
export { LAPSE_CHECK_EVERY_MS, LeaseView } from './lease.js';
export { IdentifyPacer } from './pacer.js';
export { runShards, shutdownSignal } from './runner.js';
export { SessionBook, gatewayInformationFor, restOptionsFor } from './sessions.js';
export { PROCESS_LABEL_MAX_CHARS, defaultProcessLabel, processUsage } from './usage.js';
