import { SimpleShardingStrategy, WebSocketManager, WebSocketShardDestroyRecovery, WebSocketShardEvents } from '@discordjs/ws';
import { RELEASE_REASONS } from './events.js';
import { GuildTracker } from './guilds.js';
import { gatewayInformationFor, SessionBook } from './sessions.js';

/**
 * Discord's close codes after which @discordjs/ws gives a shard up instead of reconnecting (a bad token,
 * an invalid shard, sharding required, a bad API version, invalid or disallowed intents: WebSocketShard
 * `onClose`). The claim cannot run, so it is released as "failed".
 */
const FATAL_CLOSE_CODES = new Set([4004, 4010, 4011, 4012, 4013, 4014]);

/**
 * A @discordjs/ws 2 WebSocketManager that connects to the claim's `gateway_url` (shardman shares
 * Discord's `/gateway/bot` answer) instead of calling `/gateway/bot` itself; without one it asks REST.
 */
export class ShardmanWebSocketManager extends WebSocketManager {
  /**
   * @param {import('@discordjs/ws').OptionalWebSocketManagerOptions & import('@discordjs/ws').RequiredWebSocketManagerOptions} options
   * @param {import('./index.js').Claim} claim
   */
  constructor(options, claim) {
    super(options);
    this.claim = claim;
  }

  /** @param {boolean} [force] */
  async fetchGatewayInformation(force) {
    if (!this.claim.gatewayUrl) return super.fetchGatewayInformation(force);
    return gatewayInformationFor(this.claim);
  }
}

/**
 * Start the claim's shards on @discordjs/ws 2: `shardIds`/`shardCount` from the claim, IDENTIFY paced by
 * shardman, RESUME where the claim inherited resume data (resume in), session info kept for the beats
 * (resume out), no transport compression. One manager per claim, so with placement by load (a claim
 * per shard) each shard comes and goes alone (`updateShardCount` would restart every shard).
 *
 * @param {import('./index.js').ClaimContext} context
 * @param {import('./ws.js').WebSocketShardsOptions} options
 * @returns {Promise<import('./index.js').RunningShards & { manager: ShardmanWebSocketManager }>}
 */
export async function startWebSocketShards(context, { token, intents, rest, managerOptions = {}, onManager }) {
  const { claim, log } = context;
  const sessions = new SessionBook(claim);
  const guilds = new GuildTracker();
  /** @type {Map<number, number>} */
  const latencies = new Map();
  /** Kept to reach one shard (`reconnect`); the manager only acts on all of them. @type {any} */
  let strategy = null;
  const manager = new ShardmanWebSocketManager(
    {
      ...managerOptions,
      token,
      intents,
      rest,
      shardIds: claim.shardIds,
      shardCount: claim.shardCount,
      compression: null,
      useIdentifyCompression: false,
      buildIdentifyThrottler: async () => context.throttler,
      buildStrategy: (/** @type {WebSocketManager} */ built) => (strategy = new SimpleShardingStrategy(built)),
      retrieveSessionInfo: (shardId) => /** @type {any} */ (sessions.retrieve(shardId)),
      updateSessionInfo: (shardId, info) => sessions.update(shardId, info),
    },
    claim,
  );
  manager.on(WebSocketShardEvents.HeartbeatComplete, ({ latency }, shardId) => latencies.set(shardId, latency / 1000));
  manager.on(WebSocketShardEvents.Dispatch, (payload, shardId) => guilds.dispatch(shardId, payload));
  manager.on(WebSocketShardEvents.Ready, (data, shardId) => {
    log(`shard ${shardId}: READY (session ${data.session_id})`);
    // READY proves Discord has the IDENTIFY: confirming sooner (once it is written) can reach shardman
    // before the IDENTIFY reaches the gateway, and the bucket's next IDENTIFY would follow within 5 s.
    context.throttler.identifySent(shardId);
  });
  manager.on(WebSocketShardEvents.Resumed, (shardId) => log(`shard ${shardId}: RESUMED`));
  manager.on(WebSocketShardEvents.Closed, (code, shardId) => {
    log(`shard ${shardId}: gateway closed ${code}`);
    if (FATAL_CLOSE_CODES.has(code)) context.release('failed');
  });
  manager.on(WebSocketShardEvents.Error, (error, shardId) => log(`shard ${shardId}: ${error}`));
  onManager?.(manager);
  // Fail the start (and so the claim) at once if there is no gateway to go to.
  await manager.fetchGatewayInformation();
  const resuming = claim.shardIds.filter((_, i) => claim.resumes[i]);
  if (resuming.length > 0) log(`resuming shards [${resuming.join(', ')}] with the inherited sessions`);
  manager.connect().catch((error) => {
    if (!context.signal.aborted) log(`gateway: ${error}`);
  });

  return {
    manager,
    // `stop` stops the session book first: from then on no dispatch is emitted (the library awaits
    // `retrieveSessionInfo` before each), so the sequences reported are final.
    finalOnStop: true,
    report: () =>
      claim.shardIds.map((shardId) => ({
        shardId,
        guildCount: guilds.count(shardId),
        latency: latencies.get(shardId) ?? null,
        resume: sessions.resume(shardId),
        events: sessions.dispatches(shardId),
      })),
    async reconnect(shardId) {
      // Closed with 4200 and the session kept: the shard connects again 500 ms later and RESUMEs.
      await strategy?.shards.get(shardId)?.destroy({ reason: 'shardman: reconnect', recover: WebSocketShardDestroyRecovery.Resume });
    },
    async stop(reason) {
      sessions.stop();
      // A retired generation's sessions are done with (1000 ends them at Discord); otherwise keep them
      // resumable (4000), for the next holder of the shard to RESUME.
      await manager.destroy({ code: RELEASE_REASONS[reason].closeCode, reason: `shardman: ${reason}` });
    },
  };
}
