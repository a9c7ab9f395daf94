import type { Client, ClientOptions } from 'discord.js';
import type { ClaimContext, RunningShards, SessionBook } from './index.js';

export function discordjsClientOptions(
  context: ClaimContext,
  settings?: { options?: ClientOptions; discordApiBase?: string; sessions?: SessionBook; onManager?: (manager: unknown) => void; onStrategy?: (strategy: unknown) => void },
): ClientOptions;

export function startDiscordjsShards(
  context: ClaimContext,
  settings: { token: string; options: ClientOptions; discordApiBase?: string; onClient?: (client: Client) => void },
): Promise<RunningShards & { client: Client }>;
