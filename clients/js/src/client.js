import { setTimeout as sleep } from 'node:timers/promises';
import {
  InvalidSecretError,
  NoShardsAvailableError,
  SessionNotFoundError,
  SessionRetiredError,
  ShardmanError,
  ShardmanUnavailableError,
} from './errors.js';

/** Statuses worth asking again: shardman's store is away (503) or a budget/rate limit holds (429). */
const RETRYABLE = new Set([429, 503]);

/**
 * Seconds from a `Retry-After` header (delta-seconds, fractional allowed, or an HTTP date), else null.
 * @param {string | null} value
 * @param {number} [now] epoch ms, for the date form
 * @returns {number | null}
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value.trim() === '') return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - now) / 1000);
}

/**
 * Delay before retry number `attempt` (0-based): at least what `Retry-After` asked, else exponential
 * backoff from `baseDelay` capped at `maxDelay`, with jitter so a fleet does not retry in step.
 * @param {number} attempt
 * @param {number | null} retryAfter seconds
 * @param {{ baseDelay: number, maxDelay: number }} options seconds
 * @param {() => number} [random]
 * @returns {number} seconds
 */
export function retryDelay(attempt, retryAfter, { baseDelay, maxDelay }, random = Math.random) {
  const backoff = Math.min(maxDelay, baseDelay * 2 ** attempt) * (0.75 + random() * 0.5);
  return retryAfter == null ? Math.min(maxDelay, backoff) : Math.max(retryAfter, Math.min(backoff, maxDelay));
}

/**
 * @param {Record<string, any> | null | undefined} resume
 * @returns {import('./index.js').ResumeInfo | null}
 */
function resumeFromWire(resume) {
  if (!resume || typeof resume.session_id !== 'string') return null;
  return {
    sessionId: resume.session_id,
    sequence: resume.sequence ?? null,
    resumeGatewayUrl: resume.resume_gateway_url ?? null,
  };
}

/**
 * @param {import('./index.js').ResumeInfo} resume
 */
function resumeToWire(resume) {
  return {
    session_id: resume.sessionId,
    sequence: resume.sequence,
    resume_gateway_url: resume.resumeGatewayUrl,
  };
}

/**
 * The claim `/connect` answered, camelCased, with the group fields filled in for old servers that
 * answer only `shard_id`.
 * @param {Record<string, any>} body
 * @param {number} sentAt
 * @param {number} receivedAt
 * @returns {import('./index.js').Claim}
 */
export function claimFromWire(body, sentAt, receivedAt) {
  const shardIds = Array.isArray(body.shard_ids) ? body.shard_ids : [body.shard_id];
  const sleepDurations = Array.isArray(body.sleep_durations)
    ? body.sleep_durations
    : shardIds.map((_, i) => (i === 0 ? (body.sleep_duration ?? 0) : 0));
  const resumes = Array.isArray(body.resumes)
    ? body.resumes.map(resumeFromWire)
    : shardIds.map((_, i) => (i === 0 ? resumeFromWire(body.resume) : null));
  const leaseSeconds = body.lease_seconds ?? 60;
  return {
    shardId: shardIds[0],
    shardIds,
    shardCount: body.max_shards,
    sessionId: body.session_id,
    fence: body.fence,
    generation: body.generation ?? null,
    state: body.state ?? 'active',
    sleepDurations,
    resumes,
    leaseSeconds,
    beatInterval: body.beat_interval ?? leaseSeconds / 3,
    gatewayUrl: body.gateway_url ?? null,
    sentAt,
    receivedAt,
  };
}

/**
 * The JSON body of a beat: per-shard reports in `shards`, and the first shard's also flat (for servers
 * that only read the flat fields). Unknown values are left out, so the server keeps what it had.
 * @param {string} sessionId
 * @param {import('./index.js').ShardReport[]} reports
 */
export function beatBody(sessionId, reports) {
  const shards = reports.map((report) => {
    const entry = /** @type {Record<string, unknown>} */ ({ shard_id: report.shardId });
    if (report.guildCount != null) entry.guild_count = report.guildCount;
    if (report.latency != null) entry.latency = report.latency;
    if (report.resume) entry.resume = resumeToWire(report.resume);
    return entry;
  });
  const body = /** @type {Record<string, unknown>} */ ({ session_id: sessionId });
  if (shards.length > 0) {
    const { shard_id: _first, ...flat } = shards[0];
    Object.assign(body, flat);
    body.shards = shards;
    // Connected to Discord once every shard has a session: only then may this holder complete a
    // reshard (shardman retires the old generation on it).
    body.ready = reports.every((report) => report.resume != null);
  }
  return body;
}

/**
 * A small client for shardman's HTTP API. Every timestamp it hands out (`sentAt`, `receivedAt`) is
 * `performance.now()` milliseconds: a monotonic clock, so lease arithmetic survives wall-clock jumps.
 */
export class ShardmanClient {
  /**
   * @param {import('./index.js').ShardmanClientOptions} options
   */
  constructor({ url, secret, fetch = globalThis.fetch, maxAttempts = 8, baseDelay = 0.5, maxDelay = 30, timeout = 10 }) {
    if (!url) throw new TypeError('ShardmanClient needs the shardman url');
    if (!secret) throw new TypeError('ShardmanClient needs the shardman secret');
    this.url = url.replace(/\/+$/, '');
    // Not enumerable: the secret must not show up when the client is logged or inspected.
    Object.defineProperty(this, 'secret', { value: secret, enumerable: false });
    this.fetch = fetch;
    this.maxAttempts = maxAttempts;
    this.baseDelay = baseDelay;
    this.maxDelay = maxDelay;
    this.timeout = timeout;
    // Session ids shardman re-signed during a secret rotation (README "Rotating the secret"), by
    // the id the caller knows: sent instead of it from then on.
    /** @type {Map<string, string>} */
    this.resigned = new Map();
  }

  /**
   * One request, retried on 503/429 and network errors up to `attempts` times.
   * @param {string} method
   * @param {string} path
   * @param {{ body?: unknown, headers?: Record<string, string>, attempts?: number, signal?: AbortSignal,
   *   timeout?: number, onRetry?: (info: { attempt: number, delay: number, error: ShardmanError }) => void }} [options]
   * @returns {Promise<{ response: Response, body: any, sentAt: number, receivedAt: number }>}
   */
  async request(method, path, { body, headers = {}, attempts = this.maxAttempts, signal, timeout = this.timeout, onRetry } = {}) {
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      const sentAt = performance.now();
      let response;
      let error;
      try {
        const timeoutSignal = AbortSignal.timeout(Math.ceil(timeout * 1000));
        response = await this.fetch(`${this.url}${path}`, {
          method,
          headers: {
            Authorization: this.secret,
            Accept: 'application/json',
            ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
            ...headers,
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: signal ? AbortSignal.any([signal, timeoutSignal]) : timeoutSignal,
        });
      } catch (cause) {
        if (signal?.aborted) throw signal.reason;
        error = new ShardmanUnavailableError(`${method} ${path}: ${cause instanceof Error ? cause.message : cause}`, { cause });
      }
      if (response) {
        const receivedAt = performance.now();
        const text = await response.text();
        const parsed = parseBody(text);
        if (response.ok) return { response, body: parsed, sentAt, receivedAt };
        error = errorFor(method, path, response, parsed);
        if (!RETRYABLE.has(response.status)) throw error;
      }
      if (attempt + 1 >= attempts) throw error;
      const delay = retryDelay(attempt, error.retryAfter, this);
      onRetry?.({ attempt, delay, error });
      await sleep(delay * 1000, undefined, { signal });
    }
  }

  /**
   * `GET /connect`: claim a shard (group). Throws NoShardsAvailableError when every shard is held.
   * @param {{ signal?: AbortSignal, attempts?: number, onRetry?: (info: any) => void }} [options]
   * @returns {Promise<import('./index.js').Claim>}
   */
  async connect(options = {}) {
    const { body, sentAt, receivedAt } = await this.request('GET', '/connect', options);
    return claimFromWire(body, sentAt, receivedAt);
  }

  /**
   * `POST /beat` with `Prefer: return=representation`, sent once (the lease view decides about retrying).
   * @param {string} sessionId
   * @param {import('./index.js').ShardReport[]} [reports]
   * @param {{ signal?: AbortSignal, timeout?: number }} [options]
   * @returns {Promise<import('./index.js').BeatAnswer>}
   */
  async beat(sessionId, reports = [], { signal, timeout } = {}) {
    const { response, body, sentAt, receivedAt } = await this.request('POST', '/beat', {
      body: beatBody(this.resigned.get(sessionId) ?? sessionId, reports),
      headers: { Prefer: 'return=representation' },
      attempts: 1,
      signal,
      timeout,
    });
    const resigned = response.headers.get('session-id');
    if (resigned) this.resigned.set(sessionId, resigned);
    const view = body && typeof body === 'object' ? body : {};
    return {
      status: response.status,
      shardId: view.shard_id ?? null,
      shardCount: view.max_shards ?? null,
      generation: view.generation ?? null,
      state: view.state ?? null,
      fence: view.fence ?? null,
      sentAt,
      receivedAt,
    };
  }

  /**
   * `POST /identify`: book a new IDENTIFY slot for a shard of the session's group.
   * @param {string} sessionId
   * @param {number} [shardId]
   * @param {{ signal?: AbortSignal, attempts?: number }} [options]
   * @returns {Promise<{ sleepDuration: number, sentAt: number, receivedAt: number }>}
   */
  async identify(sessionId, shardId, options = {}) {
    const sent = this.resigned.get(sessionId) ?? sessionId;
    const { body, sentAt, receivedAt } = await this.request('POST', '/identify', {
      ...options,
      body: shardId == null ? { session_id: sent } : { session_id: sent, shard_id: shardId },
    });
    return { sleepDuration: body?.sleep_duration ?? 0, sentAt, receivedAt };
  }

  /**
   * `POST /disconnect`: give the shard (group) back. A 404 (already gone) is not an error here.
   * @param {string} sessionId
   * @param {{ signal?: AbortSignal, attempts?: number }} [options]
   * @returns {Promise<boolean>} whether shardman still knew the session
   */
  async disconnect(sessionId, options = {}) {
    const sent = this.resigned.get(sessionId) ?? sessionId;
    this.resigned.delete(sessionId);
    try {
      await this.request('POST', '/disconnect', { attempts: 3, ...options, body: { session_id: sent } });
      return true;
    } catch (error) {
      if (error instanceof SessionNotFoundError) return false;
      throw error;
    }
  }
}

/**
 * JSON when it is JSON (shardman's bodies are), else the text itself, null when empty.
 * @param {string} text
 */
function parseBody(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * @param {string} method
 * @param {string} path
 * @param {Response} response
 * @param {any} body
 */
function errorFor(method, path, response, body) {
  const detail = body && typeof body === 'object' ? body.detail : body;
  const info = { status: response.status, detail, retryAfter: parseRetryAfter(response.headers.get('retry-after')) };
  const what = `${method} ${path} answered ${response.status}${typeof detail === 'string' ? ` ${detail}` : ''}`;
  switch (response.status) {
    case 401:
      return path === '/connect'
        ? new NoShardsAvailableError(`${what}: every shard is held`, info)
        : new SessionRetiredError(`${what}: the session's generation was retired, stop this process`, info);
    case 403:
      return new InvalidSecretError(`${what}: shardman refused the secret`, info);
    case 404:
      return new SessionNotFoundError(`${what}: shardman no longer knows this session`, info);
    case 429:
    case 503:
      return new ShardmanUnavailableError(what, info);
    default:
      return new ShardmanError(what, info);
  }
}
