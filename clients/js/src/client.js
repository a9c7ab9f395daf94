import { setTimeout as sleep } from 'node:timers/promises';
import { BACKOFF, retryDelay } from './backoff.js';
import {
  InvalidSecretError,
  NoShardsAvailableError,
  SessionNotFoundError,
  SessionRetiredError,
  ShardmanError,
  ShardmanUnavailableError,
} from './errors.js';
import { defaultProcessLabel, processUsage } from './usage.js';

/** The method and path of each route of the API. */
const ROUTES = Object.freeze({
  connect: ['GET', '/connect'],
  beat: ['POST', '/beat'],
  identify: ['POST', '/identify'],
  identify_permit: ['POST', '/identify/permit'],
  identify_confirm: ['POST', '/identify/confirm'],
  disconnect: ['POST', '/disconnect'],
});

/** Seconds `/identify/permit` is asked to wait for the shard's bucket to open (shardman takes 0 to 30). */
export const PERMIT_WAIT = 10;

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
    // An older shardman answers no placement: its claims are groups.
    placement: body.placement === 'load' ? 'load' : 'groups',
    // A claim that waited: its lease began no earlier than `waited` after the request was sent.
    sentAt: sentAt + (Number(body.waited) || 0) * 1000,
    receivedAt,
  };
}

/**
 * The JSON body of a beat: per-shard reports in `shards`, and the first shard's also flat (for servers
 * that only read the flat fields), and the process's usage when given. Unknown values are left out, so
 * the server keeps what it had.
 * @param {string} sessionId
 * @param {import('./index.js').ShardReport[]} reports
 * @param {import('./index.js').ProcessUsage} [usage]
 */
export function beatBody(sessionId, reports, usage) {
  const shards = reports.map((report) => {
    const entry = /** @type {Record<string, unknown>} */ ({ shard_id: report.shardId });
    if (report.guildCount != null) entry.guild_count = report.guildCount;
    if (report.latency != null) entry.latency = report.latency;
    if (report.resume) entry.resume = resumeToWire(report.resume);
    if (report.events != null) entry.events = report.events;
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
  if (usage) {
    body.cpu_seconds = usage.cpuSeconds;
    body.rss_bytes = usage.rssBytes;
  }
  return body;
}

/**
 * The answer of an acknowledged beat: the representation (`Prefer: return=representation`), or nulls
 * from a server that answered 204.
 * @param {number} status
 * @param {any} body
 * @param {number} sentAt
 * @param {number} receivedAt
 * @returns {import('./index.js').BeatAnswer}
 */
function beatAnswerFromWire(status, body, sentAt, receivedAt) {
  const view = body && typeof body === 'object' ? body : {};
  return {
    status,
    shardId: view.shard_id ?? null,
    shardCount: view.max_shards ?? null,
    generation: view.generation ?? null,
    state: view.state ?? null,
    fence: view.fence ?? null,
    // A shardman without placement by load answers neither.
    handOver: view.hand_over === true,
    reconnect: Array.isArray(view.reconnect) ? view.reconnect : [],
    sentAt,
    receivedAt,
  };
}

/**
 * Decode an answer of `route`, as clients/contract/answers.json pins it: the typed value, or a thrown
 * error whose class says what to do.
 * @param {import('./index.js').Route} route
 * @param {{ status: number, body: any, retryAfter?: string | null, sentAt?: number, receivedAt?: number }} answer
 */
export function decodeAnswer(route, { status, body, retryAfter = null, sentAt = 0, receivedAt = 0 }) {
  if (status < 200 || status >= 300) throw answerError(route, status, body, parseRetryAfter(retryAfter));
  switch (route) {
    case 'connect':
      return claimFromWire(body, sentAt, receivedAt);
    case 'beat':
      return beatAnswerFromWire(status, body, sentAt, receivedAt);
    case 'identify':
      return { sleepDuration: body?.sleep_duration ?? 0, sentAt, receivedAt };
    case 'identify_permit': {
      const granted = body?.permit === true;
      return { granted, shardId: body?.shard_id ?? null, retryAfter: granted ? null : (body?.retry_after ?? null), sentAt, receivedAt };
    }
    case 'identify_confirm':
      return body?.confirmed === true;
    case 'disconnect':
      return true;
    default:
      throw new TypeError(`unknown route ${route}`);
  }
}

/**
 * A small client for shardman's HTTP API. Every timestamp it hands out (`sentAt`, `receivedAt`) is
 * `performance.now()` milliseconds: a monotonic clock, so lease arithmetic survives wall-clock jumps.
 */
export class ShardmanClient {
  /**
   * @param {import('./index.js').ShardmanClientOptions} options
   */
  constructor({ url, secret, fetch = globalThis.fetch, maxAttempts = 8, baseDelay = BACKOFF.baseDelay, maxDelay = BACKOFF.maxDelay, timeout = 10, process = defaultProcessLabel() }) {
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
    // The label `/connect` files this process's sessions under in shardman's `/status`.
    this.process = process;
    // Session ids shardman re-signed during a secret rotation (README "Rotating the secret"), by
    // the id the caller knows: sent instead of it from then on.
    /** @type {Map<string, string>} */
    this.resigned = new Map();
  }

  /**
   * One request, sent once, whatever it answers (for routes outside the API, such as `/healthz`).
   * @param {string} method
   * @param {string} path
   * @param {{ body?: unknown, headers?: Record<string, string>, signal?: AbortSignal, timeout?: number }} [options]
   * @returns {Promise<{ status: number, body: any, retryAfter: string | null, sessionId: string | null, sentAt: number, receivedAt: number }>}
   */
  async request(method, path, { body, headers = {}, signal, timeout = this.timeout } = {}) {
    const sentAt = performance.now();
    const timeoutSignal = AbortSignal.timeout(Math.ceil(timeout * 1000));
    const response = await this.fetch(`${this.url}${path}`, {
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
    const receivedAt = performance.now();
    const text = await response.text();
    return {
      status: response.status,
      body: parseBody(text),
      retryAfter: response.headers.get('retry-after'),
      sessionId: response.headers.get('session-id'),
      sentAt,
      receivedAt,
    };
  }

  /**
   * A call of the API, decoded (`decodeAnswer`); 429, 5xx and network errors retried up to `attempts` times.
   * @param {import('./index.js').Route} route
   * @param {{ body?: unknown, query?: Record<string, string>, headers?: Record<string, string>, attempts?: number,
   *   signal?: AbortSignal, timeout?: number, onRetry?: (info: { attempt: number, delay: number, error: ShardmanError }) => void,
   *   onAnswer?: (answer: { sessionId: string | null }) => void }} [options] `onAnswer` sees the raw
   *   answer of a successful call (its headers' fields)
   * @returns {Promise<any>}
   */
  async call(route, { body, query, headers, attempts = this.maxAttempts, signal, timeout, onRetry, onAnswer } = {}) {
    const [method, routePath] = ROUTES[route];
    const path = query ? `${routePath}?${new URLSearchParams(query)}` : routePath;
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted();
      let error;
      try {
        const answer = await this.request(method, path, { body, headers, signal, timeout });
        const decoded = decodeAnswer(route, answer);
        onAnswer?.(answer);
        return decoded;
      } catch (cause) {
        if (signal?.aborted) throw signal.reason;
        error = cause instanceof ShardmanError ? cause : new ShardmanUnavailableError(`${method} ${path}: ${cause instanceof Error ? cause.message : cause}`, { cause });
      }
      if (!(error instanceof ShardmanUnavailableError) || attempt + 1 >= attempts) throw error;
      const delay = retryDelay(attempt, error.retryAfter, this);
      onRetry?.({ attempt, delay, error });
      await sleep(delay * 1000, undefined, { signal });
    }
  }

  /**
   * `GET /connect`: claim a shard (group). Throws NoShardsAvailableError when every shard is held; with `wait`
   * (seconds, up to 60), when every shard is still held after shardman waited that long for one to become free.
   * `identify`: `'permit'` (each IDENTIFY asks `/identify/permit` right before it; no slot is booked) or
   * `'slot'` (shardman's default: the answer's `sleep_durations`).
   * @param {{ wait?: number, identify?: 'permit' | 'slot', signal?: AbortSignal, attempts?: number, onRetry?: (info: any) => void }} [options]
   * @returns {Promise<import('./index.js').Claim>}
   */
  async connect({ wait, identify, ...options } = {}) {
    const query = /** @type {Record<string, string>} */ ({ process: this.process });
    if (identify) query.identify = identify;
    if (!wait) return this.call('connect', { ...options, query });
    return this.call('connect', { ...options, query: { ...query, wait: String(wait) }, timeout: wait + this.timeout });
  }

  /**
   * `POST /beat` with `Prefer: return=representation`, sent once unless `attempts` says more (the lease view
   * decides about retrying a regular beat), with the process's CPU time, resident memory and label.
   * @param {string} sessionId
   * @param {import('./index.js').ShardReport[]} [reports]
   * @param {{ signal?: AbortSignal, timeout?: number, attempts?: number }} [options]
   * @returns {Promise<import('./index.js').BeatAnswer>}
   */
  async beat(sessionId, reports = [], { signal, timeout, attempts = 1 } = {}) {
    return this.call('beat', {
      // The label is kept by shardman only where a lease has none (one re-established after a Redis data loss).
      body: { ...beatBody(this.resigned.get(sessionId) ?? sessionId, reports, processUsage()), process: this.process },
      headers: { Prefer: 'return=representation' },
      attempts,
      signal,
      timeout,
      // A session re-signed during a secret rotation: its new id is sent from now on.
      onAnswer: ({ sessionId: resigned }) => {
        if (resigned) this.resigned.set(sessionId, resigned);
      },
    });
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
    return this.call('identify', {
      ...options,
      body: shardId == null ? { session_id: sent } : { session_id: sent, shard_id: shardId },
    });
  }

  /**
   * `POST /identify/permit`: may `shardId` IDENTIFY now? shardman holds the request up to `wait` seconds
   * until the shard's bucket is open. A grant holds the bucket for 8.1 s, or until 5 s after the
   * confirm (`identifyConfirm`) that follows the IDENTIFY.
   * @param {string} sessionId
   * @param {number} [shardId] default: the group's first
   * @param {{ wait?: number, signal?: AbortSignal, attempts?: number, onRetry?: (info: any) => void }} [options]
   * @returns {Promise<import('./index.js').Permit>}
   */
  async identifyPermit(sessionId, shardId, { wait = PERMIT_WAIT, ...options } = {}) {
    const sent = this.resigned.get(sessionId) ?? sessionId;
    const body = shardId == null ? { session_id: sent, wait } : { session_id: sent, shard_id: shardId, wait };
    return this.call('identify_permit', { ...options, body, timeout: wait + this.timeout });
  }

  /**
   * `POST /identify/confirm`: the permitted IDENTIFY of `shardId` was sent (never call it before). Resolves
   * false for a permit confirmed already, or so late that the bucket was granted again since.
   * @param {string} sessionId
   * @param {number} [shardId]
   * @param {{ signal?: AbortSignal, attempts?: number, timeout?: number }} [options]
   * @returns {Promise<boolean>}
   */
  async identifyConfirm(sessionId, shardId, options = {}) {
    const sent = this.resigned.get(sessionId) ?? sessionId;
    return this.call('identify_confirm', {
      ...options,
      body: shardId == null ? { session_id: sent } : { session_id: sent, shard_id: shardId },
    });
  }

  /**
   * `POST /disconnect`: give the shard (group) back. A 404 (already gone) is not an error here.
   * @param {string} sessionId
   * @param {{ signal?: AbortSignal, attempts?: number, timeout?: number }} [options]
   * @returns {Promise<boolean>} whether shardman still knew the session
   */
  async disconnect(sessionId, options = {}) {
    const sent = this.resigned.get(sessionId) ?? sessionId;
    this.resigned.delete(sessionId);
    try {
      return await this.call('disconnect', { attempts: 3, ...options, body: { session_id: sent } });
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
 * The error a failed answer means on `route`.
 * @param {import('./index.js').Route} route
 * @param {number} status
 * @param {any} body
 * @param {number | null} retryAfter seconds
 */
function answerError(route, status, body, retryAfter) {
  const detail = body && typeof body === 'object' ? body.detail : body;
  const info = { status, detail, retryAfter };
  const what = `${ROUTES[route].join(' ')} answered ${status}${typeof detail === 'string' ? ` ${detail}` : ''}`;
  if (status === 401) {
    return route === 'connect'
      ? new NoShardsAvailableError(`${what}: every shard is held`, info)
      : new SessionRetiredError(`${what}: the session's generation was retired, stop this process`, info);
  }
  if (status === 403) return new InvalidSecretError(`${what}: shardman refused the secret`, info);
  // On /connect a 404 is a wrong URL, not a lost session.
  if (status === 404 && route !== 'connect') return new SessionNotFoundError(`${what}: shardman no longer knows this session`, info);
  if (status === 429 || status >= 500) return new ShardmanUnavailableError(what, info);
  return new ShardmanError(what, info);
}
