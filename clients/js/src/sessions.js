/**
 * Discord session info per shard, in the shape @discordjs/ws (1 and 2) keeps it
 * (`{ sessionId, sequence, shardId, shardCount, resumeURL }`): the library's `retrieveSessionInfo` /
 * `updateSessionInfo` read and write it here, beats report it (resume out), and a claim's inherited
 * `resumes[i]` seed it (resume in).
 */
export class SessionBook {
  /**
   * @param {import('./index.js').Claim} claim
   * @param {{ resumeIn?: boolean }} [options] seed the claim's `resumes` (false where the library cannot resume a session it did not start)
   */
  constructor(claim, { resumeIn = true } = {}) {
    this.claim = claim;
    /** @type {Map<number, import('./index.js').SessionInfo>} */
    this.sessions = new Map();
    this.stopped = false;
    if (resumeIn) {
      claim.shardIds.forEach((shardId, i) => {
        const resume = claim.resumes[i];
        if (!resume) return;
        this.sessions.set(shardId, {
          sessionId: resume.sessionId,
          sequence: resume.sequence ?? 0,
          shardId,
          shardCount: claim.shardCount,
          resumeURL: resume.resumeGatewayUrl ?? undefined,
        });
      });
    }
  }

  /**
   * For the library's `retrieveSessionInfo`. Once stopped it never answers: @discordjs/ws reconnects a shard
   * whose READY/HELLO wait was cut by a destroy (after 500 ms), and a shard that cannot learn its session
   * never opens that connection; a released claim must not come back to the gateway.
   * @param {number} shardId
   * @returns {import('./index.js').SessionInfo | null | Promise<never>}
   */
  retrieve(shardId) {
    if (this.stopped) return new Promise(() => {});
    return this.sessions.get(shardId) ?? null;
  }

  /**
   * For the library's `updateSessionInfo`.
   * @param {number} shardId
   * @param {import('./index.js').SessionInfo | null} info
   */
  update(shardId, info) {
    if (this.stopped) return;
    if (info) this.sessions.set(shardId, info);
    else this.sessions.delete(shardId);
  }

  /**
   * The resume data to beat for `shardId`, or null before the library has a session.
   * @param {number} shardId
   * @returns {import('./index.js').ResumeInfo | null}
   */
  resume(shardId) {
    const info = this.sessions.get(shardId);
    if (!info?.sessionId) return null;
    return { sessionId: info.sessionId, sequence: info.sequence ?? null, resumeGatewayUrl: info.resumeURL ?? null };
  }

  /**
   * The dispatches `shardId`'s session has received so far: its sequence number, which Discord raises by
   * one with every dispatch (shardman turns it into events per second); null before there is a session.
   * @param {number} shardId
   * @returns {number | null}
   */
  dispatches(shardId) {
    const sequence = this.sessions.get(shardId)?.sequence;
    return Number.isInteger(sequence) && sequence >= 0 ? sequence : null;
  }

  stop() {
    this.stopped = true;
  }
}

/**
 * `@discordjs/rest` options for a REST base such as shardman's DISCORD_API_BASE, which includes the
 * version (`https://discord.com/api/v10`); @discordjs/rest appends `/v{version}` itself.
 * @param {string} base
 * @returns {{ api: string, version: string }}
 */
export function restOptionsFor(base) {
  const trimmed = base.replace(/\/+$/, '');
  const match = /^(.*)\/v(\d+)$/.exec(trimmed);
  return match ? { api: match[1], version: match[2] } : { api: trimmed, version: '10' };
}

/**
 * A `/gateway/bot`-shaped answer built from the claim, so the library connects to shardman's
 * `gateway_url` instead of asking Discord (a fleet asking on every restart is how bots get rate limited).
 * The identify budget is shardman's business, hence the generous `remaining`.
 * @param {import('./index.js').Claim} claim
 */
export function gatewayInformationFor(claim) {
  return {
    url: /** @type {string} */ (claim.gatewayUrl),
    shards: claim.shardCount,
    session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 },
  };
}
