export { ShardmanClient, beatBody, claimFromWire, parseRetryAfter, retryDelay } from './client.js';
export {
  InvalidSecretError,
  NoShardsAvailableError,
  SessionNotFoundError,
  SessionRetiredError,
  ShardmanError,
  ShardmanUnavailableError,
} from './errors.js';
export { GuildTracker } from './guilds.js';
export { LeaseView } from './lease.js';
export { IdentifyPacer } from './pacer.js';
export { runShards, shutdownSignal } from './runner.js';
export { SessionBook, gatewayInformationFor, restOptionsFor } from './sessions.js';
