// A node:http server playing shardman, answering what each test scripts, and recording every request.
import { createServer } from 'node:http';

/**
 * @param {(request: { method: string, path: string, query: Record<string, string>, body: any, headers: Record<string, any>, count: number }) =>
 *   { status: number, body?: unknown, headers?: Record<string, string>, delay?: number }} answer `delay`: ms to hold
 *   the answer back (a shardman that waits before answering)
 */
export async function startFakeShardman(answer) {
  const requests = [];
  const counts = new Map();
  const server = createServer(async (request, response) => {
    let text = '';
    for await (const chunk of request) text += chunk;
    const [path, search = ''] = request.url.split('?');
    const count = (counts.get(path) ?? 0) + 1;
    counts.set(path, count);
    const query = Object.fromEntries(new URLSearchParams(search));
    const seen = { method: request.method, path, query, body: text ? JSON.parse(text) : null, headers: request.headers, count, time: performance.now() };
    requests.push(seen);
    const { status, body, headers = {}, delay = 0 } = answer(seen);
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    response.writeHead(status, { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers });
    response.end(body === undefined ? undefined : JSON.stringify(body));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    stop: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

/** A `/connect` answer as shardman gives it. */
export function connectAnswer({ sessionId = 's1', shardIds = [0], shardCount = 1, sleepDurations, resumes, leaseSeconds = 6, beatInterval, generation = 1, state = 'active', gatewayUrl = null, placement = 'groups' } = {}) {
  return {
    shard_id: shardIds[0],
    max_shards: shardCount,
    session_id: sessionId,
    fence: 7,
    generation,
    state,
    sleep_duration: (sleepDurations ?? shardIds.map(() => 0))[0],
    resume: null,
    shard_ids: shardIds,
    sleep_durations: sleepDurations ?? shardIds.map(() => 0),
    resumes: resumes ?? shardIds.map(() => null),
    lease_seconds: leaseSeconds,
    beat_interval: beatInterval ?? leaseSeconds / 3,
    gateway_url: gatewayUrl,
    placement,
  };
}

/**
 * What shardman answers when nothing is scripted: an IDENTIFY permit granted at once, a confirm
 * confirmed, a beat or a disconnect acknowledged.
 * @param {{ path: string, body: any }} request
 */
export function usualAnswer({ path, body }) {
  if (path === '/identify/permit') return { status: 200, body: { permit: true, shard_id: body?.shard_id ?? 0 } };
  if (path === '/identify/confirm') return { status: 200, body: { confirmed: true } };
  return { status: 204 };
}
