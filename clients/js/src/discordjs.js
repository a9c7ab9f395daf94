import { createRequire } from 'node:module';
import { Client, Status } from 'discord.js';
import { RELEASE_REASONS } from './events.js';
import { gatewayInformationFor, restOptionsFor, SessionBook } from './sessions.js';

// discord.js 14 runs on its own copy of @discordjs/ws 1; the sharding strategy must come from that copy,
// not from the @discordjs/ws 2 this package may sit next to.
const requireFromDiscordjs = createRequire(createRequire(import.meta.url).resolve('discord.js'));
const { SimpleShardingStrategy, WebSocketShardDestroyRecovery } = requireFromDiscordjs('@discordjs/ws');

/**
 * discord.js 14 `ClientOptions` for a claim, merged over `options`:
 * - `shards` / `shardCount` from the claim;
 * - `ws.buildIdentifyThrottler`: shardman's IDENTIFY pacing (a permit before each IDENTIFY, confirmed on
 *   its READY);
 * - `ws.buildStrategy`: the default SimpleShardingStrategy, on a manager that takes the claim's
 *   `gateway_url` instead of calling `/gateway/bot`, and whose session info goes through `sessions`
 *   (resume out) and stops answering once the claim is released (no reconnect of a released shard);
 * - `rest` at `discordApiBase` (a full base such as `https://discord.com/api/v10`), when given.
 *
 * Resume in is not offered here: discord.js 14 builds its client state (user, guild cache, the `ready`
 * event) from READY, so a client that RESUMEs a session it never saw stays without it. Use
 * `startWebSocketShards` (@discordjs/ws 2) for RESUME handoff.
 *
 * @param {import('./index.js').ClaimContext} context
 * @param {{ options?: import('discord.js').ClientOptions, discordApiBase?: string, sessions?: SessionBook,
 *   onManager?: (manager: any) => void, onStrategy?: (strategy: any) => void }} [settings]
 * @returns {import('discord.js').ClientOptions}
 */
export function discordjsClientOptions(context, { options = /** @type {any} */ ({}), discordApiBase, sessions = new SessionBook(context.claim, { resumeIn: false }), onManager, onStrategy } = {}) {
  const { claim } = context;
  return {
    ...options,
    shards: claim.shardIds,
    shardCount: claim.shardCount,
    rest: { ...options.rest, ...(discordApiBase ? restOptionsFor(discordApiBase) : {}) },
    ws: {
      ...options.ws,
      buildIdentifyThrottler: async () => context.throttler,
      buildStrategy: (/** @type {any} */ manager) => {
        const { retrieveSessionInfo, updateSessionInfo } = manager.options;
        manager.options.retrieveSessionInfo = (/** @type {number} */ shardId) =>
          sessions.stopped ? sessions.retrieve(shardId) : retrieveSessionInfo(shardId);
        manager.options.updateSessionInfo = (/** @type {number} */ shardId, /** @type {any} */ info) => {
          if (sessions.stopped) return;
          updateSessionInfo(shardId, info);
          sessions.update(shardId, info);
        };
        if (claim.gatewayUrl) {
          const fetchFromDiscord = manager.fetchGatewayInformation.bind(manager);
          manager.fetchGatewayInformation = async (/** @type {boolean} */ force) =>
            claim.gatewayUrl ? gatewayInformationFor(claim) : fetchFromDiscord(force);
        }
        // The IDENTIFY permit is confirmed on READY (see ws.js); @discordjs/ws 1 puts the shard id in the payload.
        manager.on('ready', (/** @type {{ shardId: number }} */ { shardId }) => context.throttler.identifySent(shardId));
        onManager?.(manager);
        const strategy = new SimpleShardingStrategy(manager);
        onStrategy?.(strategy);
        return strategy;
      },
    },
  };
}

/**
 * Start the claim's shards as a discord.js 14 Client and log in. `report()` gives each shard's guild
 * count, heartbeat latency and session (resume out); `stop()` closes the gateway at once.
 *
 * @param {import('./index.js').ClaimContext} context
 * @param {{ token: string, options: import('discord.js').ClientOptions, discordApiBase?: string,
 *   onClient?: (client: Client) => void }} settings
 * @returns {Promise<import('./index.js').RunningShards & { client: Client }>}
 */
export async function startDiscordjsShards(context, { token, options, discordApiBase, onClient }) {
  const { claim, log } = context;
  if (claim.placement === 'load') {
    // Placement by load moves a shard by handing its session over for a RESUME, which a discord.js
    // Client cannot take (no resume in, below): the moved shard would IDENTIFY again and lose its
    // events. Refused (the claim is given back, the run ends as "failed").
    throw new Error('discord.js 14 cannot RESUME a handed-over shard, so it cannot run shards placed by load (SHARDS_PER_PROCESS=auto); use shardman-client/ws, or a fixed SHARDS_PER_PROCESS');
  }
  const sessions = new SessionBook(claim, { resumeIn: false });
  /** @type {any} */
  let manager = null;
  /** @type {any} */
  let strategy = null;
  const client = new Client(
    discordjsClientOptions(context, { options, discordApiBase, sessions, onManager: (built) => (manager = built), onStrategy: (built) => (strategy = built) }),
  );
  client.on('shardReady', (shardId) => log(`shard ${shardId}: READY`));
  client.on('shardResume', (shardId) => log(`shard ${shardId}: RESUMED`));
  client.on('shardError', (error, shardId) => log(`shard ${shardId}: ${error}`));
  // Emitted only for close codes after which the shard gives up (a bad token, invalid intents...).
  client.on('shardDisconnect', ({ code }, shardId) => {
    if (context.signal.aborted) return;
    log(`shard ${shardId}: closed for good (${code})`);
    context.release('failed');
  });
  onClient?.(client);
  client.login(token).catch((error) => {
    if (context.signal.aborted) return;
    log(`discord.js login: ${error}`);
    context.release('failed'); // a bad token, say: these shards cannot run
  });
  return {
    client,
    report: () =>
      claim.shardIds.map((shardId) => {
        const ping = client.ws.shards.get(shardId)?.ping ?? -1;
        return {
          shardId,
          guildCount: client.ws.shards.get(shardId)?.status === Status.Ready ? client.guilds.cache.filter((guild) => guild.shardId === shardId).size : null,
          latency: ping >= 0 ? ping / 1000 : null,
          resume: sessions.resume(shardId),
          events: sessions.dispatches(shardId),
        };
      }),
    async reconnect(shardId) {
      // Closed with 4200 and the session kept: the shard connects again 500 ms later and RESUMEs.
      await strategy?.shards.get(shardId)?.destroy({ reason: 'shardman: reconnect', recover: WebSocketShardDestroyRecovery.Resume });
    },
    async stop(reason) {
      sessions.stop();
      // Close with 4000 unless retired, so Discord keeps the session resumable for the next holder.
      await manager?.destroy({ code: RELEASE_REASONS[reason].closeCode, reason: `shardman: ${reason}` });
      await client.destroy();
    },
  };
}
