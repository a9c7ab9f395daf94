import { hostname } from 'node:os';

/** shardman takes process labels of at most this many characters. */
export const PROCESS_LABEL_MAX_CHARS = 128;

/**
 * `<hostname>:<pid>`: the label `/connect` files this process's sessions under, unique among a fleet's
 * running processes (cut from the left if long).
 * @returns {string}
 */
export function defaultProcessLabel() {
  return `${hostname()}:${process.pid}`.slice(-PROCESS_LABEL_MAX_CHARS);
}

/**
 * What the process reports of itself with every beat: its CPU time so far (user and system, seconds)
 * and its resident memory (bytes).
 * @returns {import('./index.js').ProcessUsage}
 */
export function processUsage() {
  const { user, system } = process.cpuUsage();
  return { cpuSeconds: (user + system) / 1e6, rssBytes: process.memoryUsage.rss() };
}
