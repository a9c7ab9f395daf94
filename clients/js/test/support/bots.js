// The example bot (examples/bot.js, what the harness runs) as real processes, for the tests that run it.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const bot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'bot.js');

/**
 * Starts the example bot against `shardman` and `discord`; `lines` collects its JSON lines on stdout,
 * `stderrText` its log, `exited` resolves with its exit code.
 * @param {{ url: string, secret: string }} shardman
 * @param {{ token: string, apiBase: string }} discord
 */
export function startBot(shardman, discord) {
  const child = spawn(process.execPath, [bot], {
    env: { PATH: process.env.PATH, SHARDMAN_URL: shardman.url, SHARDMAN_SECRET: shardman.secret, DISCORD_TOKEN: discord.token, DISCORD_API_BASE: discord.apiBase },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.lines = [];
  child.stderrText = '';
  let buffered = '';
  child.stdout.on('data', (chunk) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    buffered = lines.pop();
    child.lines.push(...lines.map((line) => JSON.parse(line)));
  });
  child.stderr.on('data', (chunk) => (child.stderrText += chunk));
  child.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  return child;
}

/** Polls `check` until it answers something truthy, which it returns; throws after `timeout` ms. */
export async function until(what, check, timeout = 20_000) {
  const end = performance.now() + timeout;
  while (performance.now() < end) {
    const value = check();
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}
