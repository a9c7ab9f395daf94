import type { REST } from '@discordjs/rest';
import { WebSocketManager, type OptionalWebSocketManagerOptions, type RequiredWebSocketManagerOptions } from '@discordjs/ws';
import type { Claim, ClaimContext, RunningShards } from './index.js';

export class ShardmanWebSocketManager extends WebSocketManager {
  constructor(options: Partial<OptionalWebSocketManagerOptions> & RequiredWebSocketManagerOptions, claim: Claim);
  readonly claim: Claim;
}

export interface WebSocketShardsOptions {
  token: string;
  intents: number;
  /** Used for /gateway/bot only when the claim has no gateway_url. */
  rest: REST;
  /** More @discordjs/ws options (shard ids, count, throttler, session hooks and compression are set by the adapter). */
  managerOptions?: Partial<OptionalWebSocketManagerOptions>;
  /** Attach your dispatch handlers here. */
  onManager?: (manager: ShardmanWebSocketManager) => void;
}

export function startWebSocketShards(context: ClaimContext, options: WebSocketShardsOptions): Promise<RunningShards & { manager: ShardmanWebSocketManager }>;
