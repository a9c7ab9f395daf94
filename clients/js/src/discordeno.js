import { DiscordenoShard, createGatewayManager } from '@discordeno/gateway';
import { RELEASE_REASONS } from './events.js';
import { GuildTracker } from './guilds.js';
import { gatewayInformationFor } from './sessions.js';

/**
 * Discord's close codes after which a Discordeno shard gives up (`DiscordenoShard#handleClose` throws
 * instead of reconnecting: a bad token, an invalid shard, sharding required, a bad API version, invalid
 * or disallowed intents). The claim cannot run, so it is released as "failed".
 */
const FATAL_CLOSE_CODES = new Set([4004, 4010, 4011, 4012, 4013, 4014]);
/** `WebSocket.CONNECTING` and `WebSocket.OPEN`, the same in `ws` and the built-in WebSocket. */
const CONNECTING = 0;
const OPEN = 1;

/**
 * The gateway the claim's shards connect to, in Discordeno's `connection` shape: shardman's `gateway_url`,
 * or, when it has none, Discord's `/gateway/bot` at `discordApiBase`.
 * @param {import('./index.js').Claim} claim
 * @param {{ token: string, discordApiBase: string, fetch?: typeof fetch }} options
 */
export async function gatewayConnectionFor(claim, { token, discordApiBase, fetch = globalThis.fetch }) {
  const information = claim.gatewayUrl
    ? gatewayInformationFor(claim)
    : await fetch(`${discordApiBase.replace(/\/+$/, '')}/gateway/bot`, { headers: { authorization: `Bot ${token}` } }).then(async (response) => {
        if (!response.ok) throw new Error(`GET /gateway/bot answered ${response.status}: ${await response.text()}`);
        return response.json();
      });
  const limit = information.session_start_limit;
  return {
    url: information.url,
    shards: claim.shardCount,
    sessionStartLimit: { total: limit.total, remaining: limit.remaining, resetAfter: limit.reset_after, maxConcurrency: limit.max_concurrency },
  };
}

/**
 * Discordeno's logger interface over the claim's log: its debug chatter left out.
 * @param {(message: string) => void} log
 */
function loggerFor(log) {
  const write = (/** @type {unknown[]} */ ...args) => log(args.map((arg) => (arg instanceof Error ? arg.message : String(arg))).join(' '));
  return { debug: () => {}, info: write, warn: write, error: write, fatal: write };
}

/**
 * Start the claim's shards on Discordeno (@discordeno/gateway 21): a gateway manager for the claim's
 * shard ids and count whose `identify` hook builds each shard with shardman's hooks.
 *
 * - Every IDENTIFY of a shard asks its permit first: the shard's own `identify` (which the manager's
 *   `identify`, the shard's `requestIdentify` after a non-resumable op 9, and its reconnects after 4003,
 *   4007, 4009 or a failed RESUME all go through) waits for `throttler.waitForIdentify`. Discordeno opens
 *   the socket and writes IDENTIFY in one call, so the permit comes right before the socket opens.
 * - The shard's `shardIsReady` hook (its READY after an IDENTIFY) confirms the permit; the manager's own
 *   pacing (`spawnShardDelay`, its buckets) is not used.
 * - RESUME where the claim inherited resume data (session id, sequence, resume URL set on the shard).
 * - Beats report each shard's session, sequence (what it received), heartbeat round trip and guilds.
 * - Stopping closes each socket (4000 resumable, 1000 when retired) and waits for the close, so the last
 *   beat names the last sequence received; a stopped shard never connects again (Discordeno would RESUME
 *   after a close it did not ask for).
 *
 * @param {import('./index.js').ClaimContext} context
 * @param {import('./discordeno.js').DiscordenoShardsOptions} options
 * @returns {Promise<import('./index.js').RunningShards & { gateway: import('@discordeno/gateway').GatewayManager }>}
 */
export async function startDiscordenoShards(context, { token, intents, discordApiBase = 'https://discord.com/api/v10', events = {}, managerOptions = {}, onGateway, fetch }) {
  const { claim, log } = context;
  const connection = await gatewayConnectionFor(claim, { token, discordApiBase, fetch });
  const guilds = new GuildTracker();
  let stopped = false;
  const gateway = createGatewayManager({
    logger: loggerFor(log),
    ...managerOptions,
    token,
    intents,
    connection,
    url: connection.url,
    totalShards: claim.shardCount,
    firstShardId: Math.min(...claim.shardIds),
    lastShardId: Math.max(...claim.shardIds),
    compress: false,
    transportCompression: null,
    // shardman decides the shard count; the manager must not reshard by itself.
    resharding: { enabled: false },
    events: {
      ...events,
      message: (shard, payload) => {
        guilds.dispatch(shard.id, payload);
        return events.message?.(shard, payload);
      },
    },
  });

  /** @param {number} shardId */
  const buildShard = (shardId) => {
    const shard = new DiscordenoShard({
      id: shardId,
      connection: {
        compress: false,
        transportCompression: null,
        intents: gateway.intents,
        properties: gateway.properties,
        token: gateway.token,
        totalShards: gateway.totalShards,
        url: gateway.url,
        version: gateway.version,
      },
      events: gateway.events,
      logger: gateway.logger,
      requestIdentify: () => gateway.identify(shardId),
      // READY after an IDENTIFY: Discord has it, so its bucket may open 5 s from now.
      shardIsReady: () => context.throttler.identifySent(shardId),
      makePresence: gateway.makePresence,
    });
    if (gateway.preferSnakeCase) shard.forwardToBot = async (payload) => shard.events.message?.(shard, payload);
    const identify = shard.identify.bind(shard);
    shard.identify = async () => {
      try {
        await context.throttler.waitForIdentify(shardId, context.signal);
      } catch (error) {
        // Released while waiting (the pacer rejects once the claim's signal aborts), or shardman refused
        // the permit for good (a wrong secret). Discordeno calls identify unawaited from its socket
        // handlers, so nothing may be thrown from here.
        if (!context.signal.aborted) {
          log(`shard ${shardId}: IDENTIFY permit: ${error instanceof Error ? error.message : error}`);
          context.release('failed');
        }
        return;
      }
      if (!stopped) await identify();
    };
    const connect = shard.connect.bind(shard);
    // A released claim stays off the gateway: the RESUME Discordeno starts after any close it did not ask for never connects.
    shard.connect = () => (stopped ? new Promise(() => {}) : connect());
    const handleClose = shard.handleClose.bind(shard);
    shard.handleClose = async (/** @type {{ code: number }} */ close) => {
      if (!stopped) log(`shard ${shardId}: gateway closed ${close.code}`);
      try {
        await handleClose(close);
      } catch (error) {
        // Discordeno throws (unhandled) for the codes it gives up on.
        if (FATAL_CLOSE_CODES.has(close.code)) context.release('failed');
        else if (!stopped) log(`shard ${shardId}: ${error instanceof Error ? error.message : error}`);
      }
    };
    gateway.shards.set(shardId, shard);
    return shard;
  };

  // The manager's identify hook (its spawnShards, a shard's requestIdentify): shardman's shards, paced by permits.
  gateway.identify = async (shardId) => {
    if (!claim.shardIds.includes(shardId)) throw new RangeError(`shard ${shardId} is not part of this claim (${claim.shardIds.join(', ')})`);
    await (gateway.shards.get(shardId) ?? buildShard(shardId)).identify();
  };

  onGateway?.(gateway);
  const resuming = [];
  claim.shardIds.forEach((shardId, i) => {
    const resume = claim.resumes[i];
    const shard = buildShard(shardId);
    let started;
    if (resume) {
      resuming.push(shardId);
      shard.sessionId = resume.sessionId;
      shard.previousSequenceNumber = resume.sequence;
      shard.resumeGatewayUrl = resume.resumeGatewayUrl ?? '';
      started = shard.resume();
    } else {
      started = shard.identify();
    }
    started.catch((error) => {
      if (!context.signal.aborted) log(`shard ${shardId}: ${error}`);
    });
  });
  if (resuming.length > 0) log(`resuming shards [${resuming.join(', ')}] with the inherited sessions`);

  /** @param {DiscordenoShard} shard @param {number} code @param {string} reason */
  const close = async (shard, code, reason) => {
    // The send budget's refill timer (60 s) would keep a process that is done from exiting.
    clearTimeout(shard.bucket?.timeoutId);
    const socket = shard.socket;
    if (!socket || socket.readyState > OPEN) return;
    const closed = new Promise((resolve) => socket.addEventListener('close', resolve, { once: true }));
    // A socket still opening is cut off before it can carry an IDENTIFY or RESUME.
    if (socket.readyState === CONNECTING) socket.close();
    else await shard.close(code, reason);
    await closed;
  };

  return {
    gateway,
    report: () =>
      claim.shardIds.map((shardId) => {
        const shard = gateway.shards.get(shardId);
        const sequence = shard?.previousSequenceNumber ?? null;
        return {
          shardId,
          guildCount: guilds.count(shardId),
          latency: shard?.heart.rtt == null ? null : shard.heart.rtt / 1000,
          resume: shard?.sessionId ? { sessionId: shard.sessionId, sequence, resumeGatewayUrl: shard.resumeGatewayUrl || null } : null,
          events: shard?.sessionId && Number.isInteger(sequence) ? sequence : null,
        };
      }),
    async reconnect(shardId) {
      // Closed with Discordeno's 3024 (the session kept), connected again and RESUMEd.
      await gateway.shards.get(shardId)?.resume();
    },
    async stop(reason) {
      stopped = true;
      const code = RELEASE_REASONS[reason].closeCode;
      await Promise.all([...gateway.shards.values()].map((shard) => close(shard, code, `shardman: ${reason}`)));
    },
  };
}
