/**
 * Guilds per shard, from the gateway's dispatches: READY's list, then GUILD_CREATE / GUILD_DELETE
 * (a delete marked `unavailable` is an outage, the guild stays). Unknown (null) until the shard's READY
 * or first GUILD_CREATE: a resumed shard starts unknown, and a beat leaves an unknown count out.
 */
export class GuildTracker {
  constructor() {
    /** @type {Map<number, Set<string>>} */
    this.guilds = new Map();
  }

  /**
   * @param {number} shardId
   * @param {{ t?: string | null, d?: any }} payload a gateway dispatch
   */
  dispatch(shardId, payload) {
    const ids = this.guilds.get(shardId);
    switch (payload.t) {
      case 'READY':
        this.guilds.set(shardId, new Set((payload.d?.guilds ?? []).map((/** @type {{ id: string }} */ guild) => guild.id)));
        break;
      case 'GUILD_CREATE':
        if (ids) ids.add(payload.d.id);
        else this.guilds.set(shardId, new Set([payload.d.id]));
        break;
      case 'GUILD_DELETE':
        if (!payload.d?.unavailable) ids?.delete(payload.d.id);
        break;
      default:
    }
  }

  /** @param {number} shardId */
  count(shardId) {
    return this.guilds.get(shardId)?.size ?? null;
  }
}
