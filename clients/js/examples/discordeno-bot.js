// A shardman-managed bot on Discordeno (@discordeno/gateway): configured only by the environment, one
// JSON line on stdout per claim change, logs on stderr. Runs until SIGTERM/SIGINT (exit 0), until
// shardman retires its generation (exit 0), or until Discord refuses its shards (exit 1).
import process from 'node:process';
import { GatewayIntents } from '@discordeno/types';
import { RELEASE_REASONS, ShardmanClient, runShards, shutdownSignal } from 'shardman-client';
import { startDiscordenoShards } from 'shardman-client/discordeno';

function env(name, fallback) {
  const value = process.env[name] || fallback;
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
}

const token = env('DISCORD_TOKEN');
const shardman = new ShardmanClient({ url: env('SHARDMAN_URL'), secret: env('SHARDMAN_SECRET') });

const reason = await runShards({
  client: shardman,
  signal: shutdownSignal(['SIGTERM', 'SIGINT']),
  start: (context) =>
    startDiscordenoShards(context, {
      token,
      intents: GatewayIntents.Guilds,
      // REST (here only for /gateway/bot, when shardman has no gateway_url to share) goes to DISCORD_API_BASE.
      discordApiBase: env('DISCORD_API_BASE', 'https://discord.com/api/v10'),
      // Your bot's work goes here: every gateway payload of every shard of the claim.
      events: { message: (shard, payload) => payload.t && console.error(`shard ${shard.id}: ${payload.t}`) },
    }),
  onClaimChange: (change) => process.stdout.write(`${JSON.stringify(change)}\n`),
});
process.exit(RELEASE_REASONS[reason].exitCode);
