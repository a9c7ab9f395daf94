// A minimal stand-in for Discord, for this package's tests: REST /gateway/bot and a JSON-text gateway
// (HELLO, heartbeat ACK, IDENTIFY -> READY or op 9 inside the bucket's 5 s, RESUME -> RESUMED or op 9).
// It records what the gateway saw, so tests judge from Discord's side.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

export async function startDiscord({ token = 'test-token', maxConcurrency = 1, heartbeatInterval = 1000, shards = 1, answerIdentify = true } = {}) {
  const events = [];
  /** @type {Map<string, { shardId: number, shardCount: number, sequence: number }>} */
  const sessions = new Map();
  /** @type {Map<number, number>} bucket -> time of its last IDENTIFY */
  const lastIdentify = new Map();
  let connections = 0;
  const server = createServer((request, response) => {
    const send = (status, body) => {
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(JSON.stringify(body));
    };
    if (request.headers.authorization !== `Bot ${token}`) return send(401, { message: '401: Unauthorized', code: 0 });
    if (request.url === '/api/v10/gateway/bot') {
      return send(200, {
        url: base.replace('http', 'ws'),
        shards,
        session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: maxConcurrency },
      });
    }
    return send(404, { message: '404: Not Found', code: 0 });
  });
  const gateway = new WebSocketServer({ server });
  gateway.on('connection', (socket, request) => {
    const connection = ++connections;
    let current = null;
    const record = (type, extra = {}) => events.push({ type, time: performance.now(), connection, path: request.url, ...extra });
    // Non-dispatch payloads carry `s` and `t` as null, as Discord's do (Discordeno takes a missing `s` as the new sequence).
    const send = (payload) => socket.send(JSON.stringify({ s: null, t: null, ...payload }));
    // Bare, as Discord documents it, or `Bot `-prefixed, as Discordeno sends it (Discord takes both).
    const tokenOk = (given) => given === token || given === `Bot ${token}`;
    const dispatch = (t, d) => {
      current.sequence += 1;
      send({ op: 0, t, s: current.sequence, d });
    };
    record('open');
    send({ op: 10, d: { heartbeat_interval: heartbeatInterval } });
    socket.on('message', (data) => {
      const payload = JSON.parse(String(data));
      switch (payload.op) {
        case 1:
          send({ op: 11 });
          break;
        case 2: {
          const [shardId, shardCount] = payload.d.shard ?? [0, 1];
          if (!tokenOk(payload.d.token)) return socket.close(4004, 'Authentication failed');
          const bucket = shardId % maxConcurrency;
          const now = performance.now();
          const early = lastIdentify.has(bucket) && now - lastIdentify.get(bucket) < 5000;
          record('identify', { shardId, shardCount, early });
          if (early) return send({ op: 9, d: false });
          if (!answerIdentify) return;
          lastIdentify.set(bucket, now);
          const sessionId = randomUUID();
          current = { shardId, shardCount, sequence: 0, sessionId };
          sessions.set(sessionId, current);
          record('ready', { shardId, shardCount, sessionId });
          dispatch('READY', {
            v: 10,
            user: { id: '1', username: 'bot', discriminator: '0', bot: true },
            guilds: [{ id: String(100 + shardId), unavailable: true }],
            session_id: sessionId,
            resume_gateway_url: `${base.replace('http', 'ws')}/resume`,
            shard: [shardId, shardCount],
            application: { id: '1', flags: 0 },
          });
          // The guild READY announced as unavailable, as Discord follows up (libraries wait for it).
          dispatch('GUILD_CREATE', {
            id: String(100 + shardId), name: `guild ${shardId}`, unavailable: false, owner_id: '1', member_count: 1,
            features: [], roles: [], emojis: [], stickers: [], channels: [], threads: [], members: [], presences: [],
            voice_states: [], stage_instances: [], guild_scheduled_events: [], soundboard_sounds: [],
          });
          break;
        }
        case 6: {
          const known = sessions.get(payload.d.session_id);
          record('resume', { sessionId: payload.d.session_id, seq: payload.d.seq, known: Boolean(known), shardId: known?.shardId });
          if (!known || !tokenOk(payload.d.token)) return send({ op: 9, d: false });
          current = known;
          record('resumed', { shardId: known.shardId, shardCount: known.shardCount, sessionId: payload.d.session_id });
          dispatch('RESUMED', {});
          break;
        }
        default:
      }
    });
    socket.on('close', (code) => record('close', { code, shardId: current?.shardId }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    token,
    apiBase: `${base}/api/v10`,
    gatewayUrl: base.replace('http', 'ws'),
    events,
    /** Connections whose socket is open now, by the shard they identified or resumed as. */
    openShards: () => {
      const open = new Map();
      for (const event of events) {
        if (event.type === 'ready' || event.type === 'resumed') open.set(event.connection, event.shardId);
        if (event.type === 'close') open.delete(event.connection);
      }
      return [...open.values()].sort();
    },
    async stop() {
      for (const client of gateway.clients) client.terminate();
      gateway.close();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
