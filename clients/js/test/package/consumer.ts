// A bot's TypeScript against the published package's .d.ts (scripts/check-js-package.sh runs
// `tsc --noEmit` on it in a scratch project where the tarball is installed).
import { REST } from '@discordjs/rest';
import { GatewayIntentBits } from 'discord-api-types/v10';
import {
  type Claim,
  type ClaimChange,
  type ReleaseReason,
  RELEASE_REASONS,
  ShardmanClient,
  SessionNotFoundError,
  restOptionsFor,
  runShards,
  shutdownSignal,
} from 'shardman-client';
import { startDiscordjsShards } from 'shardman-client/discordjs';
import { startDiscordenoShards } from 'shardman-client/discordeno';
import { startWebSocketShards } from 'shardman-client/ws';

declare const url: string;
declare const secret: string;
declare const token: string;
const intents = GatewayIntentBits.Guilds;
const rest = new REST(restOptionsFor('https://discord.com/api/v10')).setToken(token);

// The README's three lines.
await runShards({ client: new ShardmanClient({ url, secret }), signal: shutdownSignal(), start: (context) => startWebSocketShards(context, { token, intents, rest }) });

const client = new ShardmanClient({ url, secret, process: 'worker-3', timeout: 5 });
const claim: Claim = await client.connect({ wait: 30, identify: 'permit' });
const permit = await client.identifyPermit(claim.sessionId, claim.shardIds[0], { wait: 10 });
const confirmed: boolean = permit.granted && (await client.identifyConfirm(claim.sessionId, claim.shardIds[0]));
const answer = await client.beat(claim.sessionId, [{ shardId: claim.shardIds[0], guildCount: 1, latency: 0.04, events: 7 }]);
const reconnect: number[] = answer.reconnect;
const handOver: boolean = answer.handOver;
console.log(confirmed, reconnect, handOver);

const lines: ClaimChange[] = [];
const reason: 'retired' | 'shutdown' | 'failed' = await runShards({
  client,
  onClaimChange: (change) => lines.push(change),
  start: async (context) => {
    if (context.claim.placement === 'load') {
      const running = await startDiscordenoShards(context, {
        token,
        intents: 1,
        discordApiBase: 'https://discord.com/api/v10',
        events: { message: (shard, payload) => console.log(shard.id, payload.t) },
        onGateway: (gateway) => console.log(gateway.totalShards),
      });
      await running.gateway.editShardStatus(context.claim.shardIds[0], { status: 'online' });
      return running;
    }
    return startDiscordjsShards(context, { token, options: { intents: [intents] }, onClient: (bot) => bot.on('ready', () => console.log(bot.user?.id)) });
  },
});
const exitCode: number | null = RELEASE_REASONS[reason].exitCode;
const each: ReleaseReason[] = ['lapsed', 'lost', 'retired', 'shutdown', 'failed', 'handed_over'];
console.log(exitCode, each, new SessionNotFoundError('gone') instanceof Error);
