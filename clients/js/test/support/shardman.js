// The real shardman binary on a free port, with the in-process store.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const repository = path.resolve(packageDir, '..', '..');
export const shardmanBin = process.env.SHARDMAN_BIN || path.resolve(repository, 'target', 'debug', 'shardman');

/** Without SHARDMAN_BIN, build the repository's debug binary if it is not there (what `cargo test` builds anyway). */
function ensureBinary() {
  if (existsSync(shardmanBin) || process.env.SHARDMAN_BIN) return;
  const build = spawnSync('cargo', ['build', '--bin', 'shardman'], { cwd: repository, stdio: ['ignore', 'ignore', 'inherit'] });
  if (build.status !== 0) throw new Error(`no shardman binary at ${shardmanBin}, and \`cargo build --bin shardman\` failed (set SHARDMAN_BIN)`);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export async function startShardman(env = {}) {
  ensureBinary();
  if (!existsSync(shardmanBin)) throw new Error(`no shardman binary at ${shardmanBin} (set SHARDMAN_BIN)`);
  const port = await freePort();
  const secret = 'test-secret';
  const child = spawn(shardmanBin, [], {
    env: { PATH: process.env.PATH, SECRET: secret, HOST: '127.0.0.1', PORT: String(port), RUST_LOG: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`shardman exited: ${stderr}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (i > 100) throw new Error(`shardman did not get ready: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    secret,
    async stop() {
      child.kill('SIGTERM');
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', resolve)));
    },
  };
}
