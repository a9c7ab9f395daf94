// shardman status page: reads /status every few seconds and draws one cell per planned shard.
// No framework and no build step; served from the binary.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  // A bot reporting more gateway latency than this (seconds) is drawn as "high latency".
  const HIGH_LATENCY_SECONDS = 1.0;
  // Grids larger than this use small cells.
  const DENSE_ABOVE = 1024;
  const STORAGE_KEY = "shardman.secret";

  const body = document.body;
  const publicStatus = body.dataset.publicStatus === "true";
  const leaseSeconds = Number(body.dataset.leaseSeconds) || 60;
  // A beat older than half the lease is late: one more missed beat and the shard is freed.
  const lateAfterMs = (leaseSeconds * 1000) / 2;

  const $ = (id) => document.getElementById(id);
  const grid = $("grid");
  let shardsById = new Map();
  let timer = null;

  function secret() {
    return sessionStorage.getItem(STORAGE_KEY);
  }

  function showLogin(message) {
    $("fleet").hidden = true;
    $("login").hidden = false;
    $("forget").hidden = true;
    $("login-error").textContent = message || "";
    $("secret").focus();
  }

  function showError(message) {
    const banner = $("error");
    banner.textContent = message;
    banner.hidden = !message;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }

  async function refresh() {
    const key = secret();
    if (!key && !publicStatus) {
      showLogin();
      return;
    }
    const headers = key ? { Authorization: key } : {};
    let response;
    try {
      response = await fetch("/status", { headers, cache: "no-store" });
    } catch (error) {
      showError("Cannot reach shardman: " + error.message);
      schedule();
      return;
    }
    if (response.status === 403) {
      sessionStorage.removeItem(STORAGE_KEY);
      showLogin("That secret is not this deployment's.");
      return;
    }
    if (response.status === 422) {
      showLogin();
      return;
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail || detail;
      } catch (_) {
        // not JSON: keep the status text
      }
      showError("shardman answered " + response.status + ": " + detail);
      schedule();
      return;
    }
    const fleet = await response.json();
    showError("");
    render(fleet);
    schedule();
  }

  function classify(shard, now) {
    if (!shard) return "missing";
    const age = now - Date.parse(shard.last_beat);
    if (age > lateAfterMs) return "late";
    if (typeof shard.latency === "number" && shard.latency > HIGH_LATENCY_SECONDS) return "slow";
    return "held";
  }

  function ensureCells(total) {
    if (grid.childElementCount === total) return;
    const fragment = document.createDocumentFragment();
    for (let id = 0; id < total; id++) {
      const cell = document.createElement("span");
      cell.className = "cell missing";
      cell.dataset.shard = String(id);
      cell.setAttribute("role", "listitem");
      fragment.appendChild(cell);
    }
    grid.replaceChildren(fragment);
    grid.classList.toggle("dense", total > DENSE_ABOVE);
  }

  function render(fleet) {
    const total = fleet.total_shards || 0;
    const now = Date.now();
    shardsById = new Map(fleet.shards.map((shard) => [shard.shard_id, shard]));
    ensureCells(total);

    const counts = { held: 0, late: 0, slow: 0, missing: 0 };
    let guilds = 0;
    const cells = grid.children;
    for (let id = 0; id < total; id++) {
      const shard = shardsById.get(id);
      const state = classify(shard, now);
      counts[state] += 1;
      if (shard && typeof shard.guild_count === "number") guilds += shard.guild_count;
      const cell = cells[id];
      const className = "cell " + state;
      if (cell.className !== className) cell.className = className;
      cell.dataset.state = state;
    }
    const held = total - counts.missing;

    $("total-shards").textContent = total.toLocaleString();
    $("total-held").textContent = held.toLocaleString();
    $("total-missing").textContent = counts.missing.toLocaleString();
    $("total-late").textContent = counts.late.toLocaleString();
    $("total-slow").textContent = counts.slow.toLocaleString();
    $("total-guilds").textContent = guilds.toLocaleString();
    // One bot process holds one shard.
    const pendingHeld = fleet.pending ? (fleet.pending.shards || []).length : 0;
    $("total-processes").textContent = (fleet.shards.length + pendingHeld).toLocaleString();
    renderGenerations(fleet, held);

    $("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
    $("login").hidden = true;
    $("fleet").hidden = false;
    $("forget").hidden = !secret();
    body.dataset.ready = "true";
  }

  // The active generation and, during a reshard, the pending one with its progress.
  function renderGenerations(fleet, held) {
    const list = [{ generation: fleet.generation, total_shards: fleet.total_shards, held, state: "active" }];
    if (fleet.pending) {
      list.push({
        generation: fleet.pending.generation,
        total_shards: fleet.pending.max_shards,
        held: (fleet.pending.shards || []).length,
        state: "pending: reshard in progress",
      });
    }
    const container = $("generations");
    container.replaceChildren(
      ...list.map((generation) => {
        const box = document.createElement("div");
        box.className = "generation";
        const planned = Number(generation.total_shards) || 0;
        const ready = Number(generation.held) || 0;
        const percent = planned ? Math.min(100, Math.round((100 * ready) / planned)) : 0;
        box.textContent =
          "Generation " + generation.generation + " (" + (generation.state || "pending") + "): " +
          ready.toLocaleString() + " of " + planned.toLocaleString() + " shards held";
        const bar = document.createElement("div");
        bar.className = "progress";
        const fill = document.createElement("span");
        fill.style.width = percent + "%";
        bar.appendChild(fill);
        box.appendChild(bar);
        return box;
      })
    );
  }

  grid.addEventListener("mouseover", (event) => {
    const id = event.target.dataset && event.target.dataset.shard;
    if (id === undefined) return;
    const shard = shardsById.get(Number(id));
    if (!shard) {
      $("detail").textContent = "Shard " + id + ": missing (no live session holds it)";
      return;
    }
    const age = Math.round((Date.now() - Date.parse(shard.last_beat)) / 1000);
    const latency = typeof shard.latency === "number" ? Math.round(shard.latency * 1000) + " ms" : "–";
    const guilds = typeof shard.guild_count === "number" ? shard.guild_count.toLocaleString() : "–";
    $("detail").textContent =
      "Shard " + id + ": last beat " + age + " s ago, latency " + latency + ", " + guilds + " guilds";
  });

  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("secret").value.trim();
    if (!value) return;
    sessionStorage.setItem(STORAGE_KEY, value);
    $("secret").value = "";
    refresh();
  });

  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(STORAGE_KEY);
    clearTimeout(timer);
    showLogin();
  });

  refresh();
})();
