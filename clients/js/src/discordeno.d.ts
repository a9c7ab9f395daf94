import type { CreateGatewayManagerOptions, GatewayManager, ShardEvents } from '@discordeno/gateway';
import type { Claim, ClaimContext, RunningShards } from './index.js';

export interface DiscordenoShardsOptions {
  token: string;
  intents: number;
  /** The REST base with its version (`DISCORD_API_BASE`), for `/gateway/bot` only when the claim has no gateway_url (default `https://discord.com/api/v10`). */
  discordApiBase?: string;
  /** The shards' event handlers; `message` gets every gateway payload of every shard of the claim. */
  events?: Partial<ShardEvents>;
  /** More manager options (token, intents, shard ids and count, connection, compression and resharding are set by the adapter). */
  managerOptions?: Partial<CreateGatewayManagerOptions>;
  /** The claim's gateway manager, before its shards connect: attach your handlers, keep it for `sendPayload`, `editShardStatus`, `requestMembers`. */
  onGateway?: (gateway: GatewayManager) => void;
  fetch?: typeof fetch;
}

/** The claim's gateway in Discordeno's `connection` shape: shardman's gateway_url, or `/gateway/bot` at `discordApiBase`. */
export function gatewayConnectionFor(
  claim: Claim,
  options: { token: string; discordApiBase: string; fetch?: typeof fetch },
): Promise<{ url: string; shards: number; sessionStartLimit: { total: number; remaining: number; resetAfter: number; maxConcurrency: number } }>;

export function startDiscordenoShards(context: ClaimContext, options: DiscordenoShardsOptions): Promise<RunningShards & { gateway: GatewayManager }>;
