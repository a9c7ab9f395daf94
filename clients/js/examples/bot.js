// A shardman-managed bot on @discordjs/ws 2: configured only by the environment, one JSON line on
// stdout per claim change, logs on stderr. Runs until SIGTERM/SIGINT (exit 0), until shardman
// retires its generation (exit 0), or until Discord refuses its shards (exit 1).
import process from 'node:process';
import { REST } from '@discordjs/rest';
import { GatewayIntentBits } from 'discord-api-types/v10';
import { RELEASE_REASONS, ShardmanClient, restOptionsFor, runShards, shutdownSignal } from 'shardman-client';
import { startWebSocketShards } from 'shardman-client/ws';

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
// REST (here only for /gateway/bot, when shardman has no gateway_url to share) goes to DISCORD_API_BASE.
const rest = new REST(restOptionsFor(env('DISCORD_API_BASE', 'https://discord.com/api/v10'))).setToken(token);

const reason = await runShards({
  client: shardman,
  signal: shutdownSignal(['SIGTERM', 'SIGINT']),
  start: (context) =>
    startWebSocketShards(context, {
      token,
      intents: GatewayIntentBits.Guilds,
      rest,
      // Your bot's work goes here: every gateway dispatch of every shard of the claim.
      onManager: (manager) => manager.on('dispatch', (payload, shardId) => console.error(`shard ${shardId}: ${payload.t}`)),
    }),
  onClaimChange: (change) => process.stdout.write(`${JSON.stringify(change)}\n`),
});
process.exit(RELEASE_REASONS[reason].exitCode);
