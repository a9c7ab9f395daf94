// Types of shardman-client (hand-written; the package ships plain ESM, no build step).

/** Discord resume data, as beats report it and `/connect` hands it to the next holder. */
export interface ResumeInfo {
  sessionId: string;
  sequence: number | null;
  resumeGatewayUrl: string | null;
}

/** @discordjs/ws's SessionInfo. */
export interface SessionInfo {
  sessionId: string;
  sequence: number;
  shardId: number;
  shardCount: number;
  resumeURL?: string;
}

/** What `GET /connect` granted. Times are `performance.now()` milliseconds. */
export interface Claim {
  /** The group's first shard id (`shard_id`). */
  shardId: number;
  shardIds: number[];
  /** The shard count to identify with (`max_shards`). */
  shardCount: number;
  sessionId: string;
  fence: number;
  generation: number | null;
  state: 'active' | 'standby';
  /** Seconds to wait before each shard's first IDENTIFY. */
  sleepDurations: number[];
  /** Per shard: the previous holder's session to RESUME, or null. */
  resumes: (ResumeInfo | null)[];
  leaseSeconds: number;
  beatInterval: number;
  /** Discord's gateway URL as shardman shares it, or null when it has none. */
  gatewayUrl: string | null;
  /** `load` (`SHARDS_PER_PROCESS=auto`: one shard per claim, as many claims as placement gives) or `groups`. */
  placement: 'groups' | 'load';
  /** When the /connect request was sent (plus the `waited` shardman answered): the lease view counts from here. */
  sentAt: number;
  receivedAt: number;
}

/** One shard's report in a beat; null/undefined values are left out (shardman keeps the last). */
export interface ShardReport {
  shardId: number;
  guildCount?: number | null;
  /** Seconds. */
  latency?: number | null;
  resume?: ResumeInfo | null;
  /** Dispatches the shard's current session has received so far (its sequence number). */
  events?: number | null;
}

/** What the process reports of itself with every beat. */
export interface ProcessUsage {
  /** CPU time so far, user and system, seconds. */
  cpuSeconds: number;
  /** Resident memory, bytes. */
  rssBytes: number;
}

export interface BeatAnswer {
  status: number;
  shardId: number | null;
  shardCount: number | null;
  generation: number | null;
  state: 'active' | 'standby' | null;
  fence: number | null;
  /** Placement moves this claim's shard away: hand it over (release `handed_over`). */
  handOver: boolean;
  /** Shard ids of the claim to reconnect, RESUME first. */
  reconnect: number[];
  sentAt: number;
  receivedAt: number;
}

/** What `POST /identify/permit` answered. */
export interface Permit {
  granted: boolean;
  shardId: number | null;
  /** Seconds, shardman's estimate until the bucket opens; null when granted. */
  retryAfter: number | null;
  sentAt: number;
  receivedAt: number;
}

export interface ShardmanClientOptions {
  url: string;
  secret: string;
  fetch?: typeof fetch;
  /** Tries per call on 503/429/network errors (default 8; beats are sent once). */
  maxAttempts?: number;
  /** Backoff base and cap, seconds (0.5, 30). */
  baseDelay?: number;
  maxDelay?: number;
  /** Per-request timeout, seconds (10). */
  timeout?: number;
  /** The label `/connect` files this process's sessions under (at most 128 printable characters; default `<hostname>:<pid>`). */
  process?: string;
}

export interface RetryInfo {
  attempt: number;
  delay: number;
  error: ShardmanError;
}

/** The routes of shardman's API. */
export type Route = 'connect' | 'beat' | 'identify' | 'identify_permit' | 'identify_confirm' | 'disconnect';

/** An answer as it arrived; `retryAfter` is the header's text. */
export interface RawAnswer {
  status: number;
  body: any;
  retryAfter?: string | null;
  /** The `Session-Id` header: the session re-signed during a secret rotation. */
  sessionId?: string | null;
  sentAt?: number;
  receivedAt?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
  attempts?: number;
  timeout?: number;
  onRetry?: (info: RetryInfo) => void;
}

export class ShardmanClient {
  constructor(options: ShardmanClientOptions);
  readonly url: string;
  /** The label `/connect` sends as `process`. */
  readonly process: string;
  /** One request sent once, whatever it answers. */
  request(method: string, path: string, options?: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal; timeout?: number }): Promise<Required<RawAnswer>>;
  /** A call of the API, decoded by `decodeAnswer`; 429, 5xx and network errors retried. */
  call(route: Route, options?: CallOptions & { body?: unknown; query?: Record<string, string>; headers?: Record<string, string>; onAnswer?: (answer: Required<RawAnswer>) => void }): Promise<unknown>;
  /**
   * `wait`: seconds (up to 60) shardman may wait for a shard to become free before answering 401.
   * `identify`: `permit` (ask `/identify/permit` before each IDENTIFY) or `slot` (shardman's default).
   */
  connect(options?: CallOptions & { wait?: number; identify?: 'permit' | 'slot' }): Promise<Claim>;
  beat(sessionId: string, reports?: ShardReport[], options?: { signal?: AbortSignal; timeout?: number; attempts?: number }): Promise<BeatAnswer>;
  identify(sessionId: string, shardId?: number, options?: CallOptions): Promise<{ sleepDuration: number; sentAt: number; receivedAt: number }>;
  /** `wait`: seconds (0 to 30, default PERMIT_WAIT) shardman may hold the ask until the bucket is open. */
  identifyPermit(sessionId: string, shardId?: number, options?: CallOptions & { wait?: number }): Promise<Permit>;
  /** Call only once the permitted IDENTIFY was sent. False: confirmed already, or too late. */
  identifyConfirm(sessionId: string, shardId?: number, options?: CallOptions): Promise<boolean>;
  /** Resolves false when shardman no longer knew the session. */
  disconnect(sessionId: string, options?: CallOptions): Promise<boolean>;
}

/** Seconds each `/identify/permit` asks shardman to wait for the bucket (10). */
export const PERMIT_WAIT: number;
export function parseRetryAfter(value: string | null, now?: number): number | null;
/** The decoded answer of `route` (a Claim, a BeatAnswer, an identify slot, a Permit, a confirm's boolean, true), or the thrown error it means. */
export function decodeAnswer(route: Route, answer: RawAnswer): unknown;

/** Backoff, as clients/contract/backoff.json pins it (seconds). */
export const JITTER: number;
export const NO_SHARDS_AVAILABLE_RETRY: number;
export const CONNECT_WAIT: number;
export const BACKOFF: Readonly<{ baseDelay: number; maxDelay: number }>;
export function jittered(seconds: number, random?: () => number): number;
export function retryDelay(attempt: number, retryAfter: number | null, options: { baseDelay: number; maxDelay: number }, random?: () => number): number;
export function beatRetryDelay(failures: number, retryAfter: number | null, beatInterval: number, random?: () => number): number;
export function noShardsAvailableDelay(random?: () => number): number;
export function claimFromWire(body: Record<string, unknown>, sentAt: number, receivedAt: number): Claim;
export function beatBody(sessionId: string, reports: ShardReport[], usage?: ProcessUsage): Record<string, unknown>;

export const PROCESS_LABEL_MAX_CHARS: number;
/** `<hostname>:<pid>`, cut to PROCESS_LABEL_MAX_CHARS. */
export function defaultProcessLabel(): string;
/** This process's CPU time and resident memory now. */
export function processUsage(): ProcessUsage;

export class ShardmanError extends Error {
  status?: number;
  detail?: unknown;
  retryAfter: number | null;
}
export class NoShardsAvailableError extends ShardmanError {}
export class SessionRetiredError extends ShardmanError {}
export class SessionNotFoundError extends ShardmanError {}
export class InvalidSecretError extends ShardmanError {}
export class ShardmanUnavailableError extends ShardmanError {}

/** The lapse is checked at least this often (ms). */
export const LAPSE_CHECK_EVERY_MS: number;

export class LeaseView {
  constructor(claim: Pick<Claim, 'sentAt' | 'sleepDurations' | 'leaseSeconds'>, options?: { now?: () => number; checkEvery?: number });
  deadline: number;
  remaining(): number;
  expired(): boolean;
  acknowledge(sentAt: number): void;
  watch(onLapse: () => void): void;
  stop(): void;
}

/** @discordjs/ws's IIdentifyThrottler, paced by shardman's permits. */
export class IdentifyPacer {
  constructor(client: ShardmanClient, claim: Claim, options: { signal: AbortSignal; release: (reason: ReleaseReason) => void; log?: (message: string) => void; permitWait?: number });
  /** Resolves once `/identify/permit` granted the shard its IDENTIFY. */
  waitForIdentify(shardId: number, signal?: AbortSignal): Promise<void>;
  /** The shard's IDENTIFY was written: confirm its permit (only the first call after a grant does). */
  identifySent(shardId: number): Promise<void>;
}

/** Why a claim ended; the same list in every client package (clients/contract/claim_events.json). */
export type ReleaseReason = 'lapsed' | 'lost' | 'retired' | 'shutdown' | 'failed' | 'handed_over';

/** What each release reason does. */
export const RELEASE_REASONS: Readonly<Record<ReleaseReason, { claimsAgain: boolean; givesBack: boolean; closeCode: number; exitCode: number | null }>>;
/** The close code that keeps a Discord session resumable (4000), and the one that ends it (1000). */
export const RESUMABLE_CLOSE: number;
export const FINAL_CLOSE: number;

/** What a library adapter gets for one claim. */
export interface ClaimContext {
  claim: Claim;
  client: ShardmanClient;
  lease: LeaseView;
  /** Aborted when the claim is released. */
  signal: AbortSignal;
  /** Release the claim (stops the shards). */
  release: (reason: ReleaseReason) => void;
  log: (message: string) => void;
  throttler: IdentifyPacer;
}

/** What a library adapter hands back: the shards' reports for beats, and a way to stop them at once. */
export interface RunningShards {
  report(): ShardReport[];
  stop(reason: ReleaseReason): Promise<void> | void;
  /** No dispatch reaches the bot once `stop` was called, so `report()` is final then: the last beat goes out while the shards close (before `/disconnect`, which waits for them). */
  finalOnStop?: boolean;
  /** Close one shard and connect it again, RESUMEing its session (a beat's `reconnect`). */
  reconnect?(shardId: number): Promise<void> | void;
}

export type StartShards = (context: ClaimContext) => RunningShards | Promise<RunningShards>;

export type ClaimChange =
  | { event: 'claimed'; shard_ids: number[]; shard_count: number; generation: number | null; state: 'active' | 'standby' }
  | { event: 'released'; shard_ids: number[]; shard_count: number; generation: number | null; reason: ReleaseReason };

export interface RunShardsOptions {
  client: ShardmanClient;
  start: StartShards;
  /** Abort to shut down (close the gateway, hand resume data over, /disconnect). */
  signal?: AbortSignal;
  onClaimChange?: (change: ClaimChange) => void;
  log?: (message: string) => void;
  /** Seconds between /connect tries while every shard is held and shardman does not wait (1, with jitter). */
  noShardsDelay?: number;
  /** Seconds each /connect asks shardman to wait for a shard to become free (30; 0: do not wait). */
  connectWait?: number;
}

/**
 * Claim, run and release shards until a release reason ends the run. Claims placed by load
 * (`placement: 'load'`) run side by side, `start` once per claim, with one waiting `/connect` open.
 */
export function runShards(options: RunShardsOptions): Promise<'retired' | 'shutdown' | 'failed'>;
export function claimedEvent(claim: Claim): ClaimChange;
export function releasedEvent(claim: Claim, reason: ReleaseReason): ClaimChange;
export function shutdownSignal(signals?: NodeJS.Signals[]): AbortSignal;

export class SessionBook {
  constructor(claim: Claim, options?: { resumeIn?: boolean });
  readonly stopped: boolean;
  retrieve(shardId: number): SessionInfo | null | Promise<never>;
  update(shardId: number, info: SessionInfo | null): void;
  resume(shardId: number): ResumeInfo | null;
  /** Dispatches the shard's session has received (its sequence number), or null before it has one. */
  dispatches(shardId: number): number | null;
  stop(): void;
}

export class GuildTracker {
  dispatch(shardId: number, payload: { t?: string | null; d?: unknown }): void;
  count(shardId: number): number | null;
}

export function restOptionsFor(base: string): { api: string; version: string };
export function gatewayInformationFor(claim: Claim): {
  url: string;
  shards: number;
  session_start_limit: { total: number; remaining: number; reset_after: number; max_concurrency: number };
};
