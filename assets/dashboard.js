// shardman status page: reads /status every few seconds and draws one cell per planned shard.
// No framework and no build step; served from the binary.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  // A bot reporting more gateway latency than this (seconds) is drawn as "high latency".
  const HIGH_LATENCY_SECONDS = 1.0;
  // Grids larger than this use small cells.
  const DENSE_ABOVE = 1024;
  // Load levels of a held shard, by its events per second over the fleet's mean: below each
  // bound, that level; above the last, "hot".
  const LOAD_LEVELS = [
    { level: "low", below: 0.5 },
    { level: "normal", below: 1.5 },
    { level: "busy", below: 3 },
  ];
  // The process list shows the busiest ones first, this many at most.
  const PROCESS_ROWS = 50;
  // The plot spans the last hour.
  const HISTORY_MS = 3600 * 1000;
  const SVG = "http://www.w3.org/2000/svg";
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

  // A held shard's load level against the fleet's mean rate; "" while it has no rate.
  function loadLevel(shard, meanRate) {
    if (!shard || typeof shard.events_per_second !== "number" || !(meanRate > 0)) return "";
    const ratio = shard.events_per_second / meanRate;
    const found = LOAD_LEVELS.find((bound) => ratio < bound.below);
    return found ? found.level : "hot";
  }

  function render(fleet) {
    const total = fleet.total_shards || 0;
    const now = Date.now();
    shardsById = new Map(fleet.shards.map((shard) => [shard.shard_id, shard]));
    ensureCells(total);

    const rates = fleet.shards
      .map((shard) => shard.events_per_second)
      .filter((rate) => typeof rate === "number");
    const eventsPerSecond = rates.reduce((sum, rate) => sum + rate, 0);
    const meanRate = rates.length ? eventsPerSecond / rates.length : 0;

    const counts = { held: 0, late: 0, slow: 0, missing: 0 };
    let guilds = 0;
    const cells = grid.children;
    for (let id = 0; id < total; id++) {
      const shard = shardsById.get(id);
      const state = classify(shard, now);
      counts[state] += 1;
      if (shard && typeof shard.guild_count === "number") guilds += shard.guild_count;
      const cell = cells[id];
      // Problems keep their colour; a held shard is coloured by its load once it has a rate.
      const load = state === "held" ? loadLevel(shard, meanRate) : "";
      const className = "cell " + state + (load ? " load-" + load : "");
      if (cell.className !== className) cell.className = className;
      cell.dataset.state = state;
      cell.dataset.load = load;
    }
    const held = total - counts.missing;

    $("total-shards").textContent = total.toLocaleString();
    $("total-held").textContent = held.toLocaleString();
    $("total-missing").textContent = counts.missing.toLocaleString();
    $("total-late").textContent = counts.late.toLocaleString();
    $("total-slow").textContent = counts.slow.toLocaleString();
    $("total-guilds").textContent = guilds.toLocaleString();
    $("total-events").textContent = rates.length ? formatRate(eventsPerSecond) : "–";
    const processes = fleet.processes || [];
    $("total-processes").textContent = processes.length.toLocaleString();
    renderGenerations(fleet, held);
    renderProcesses(processes);
    renderHistory(fleet.history || [], now);

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

  function formatRate(rate) {
    return rate.toLocaleString(undefined, { maximumFractionDigits: rate < 10 ? 1 : 0 });
  }

  function formatBytes(bytes) {
    const mebibytes = bytes / (1024 * 1024);
    if (mebibytes >= 1024) return (mebibytes / 1024).toFixed(1) + " GiB";
    return Math.round(mebibytes).toLocaleString() + " MiB";
  }

  // 0,1,2,3,7,9,10 as "0–3, 7, 9–10".
  function shardRanges(ids) {
    const sorted = [...ids].sort((a, b) => a - b);
    const parts = [];
    let start = null;
    let previous = null;
    for (const id of sorted.concat([null])) {
      if (start !== null && id === previous + 1) {
        previous = id;
        continue;
      }
      if (start !== null) parts.push(start === previous ? String(start) : start + "–" + previous);
      start = id;
      previous = id;
    }
    return parts.join(", ");
  }

  // The processes, busiest first: shards, events per second, CPU and memory.
  function renderProcesses(processes) {
    const rateOf = (process) =>
      typeof process.events_per_second === "number" ? process.events_per_second : -1;
    const busiest = [...processes].sort((a, b) => rateOf(b) - rateOf(a));
    const rows = busiest.slice(0, PROCESS_ROWS).map((process) => {
      const row = document.createElement("tr");
      const cells = [
        process.process || "(unnamed session)",
        shardRanges(process.shard_ids || []),
        typeof process.events_per_second === "number" ? formatRate(process.events_per_second) : "–",
        typeof process.cpu === "number" ? process.cpu.toFixed(2) : "–",
        typeof process.rss_bytes === "number" ? formatBytes(process.rss_bytes) : "–",
      ];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      return row;
    });
    $("process-rows").replaceChildren(...rows);
    const hidden = processes.length - rows.length;
    $("process-more").textContent = hidden > 0 ? "and " + hidden.toLocaleString() + " more" : "";
    $("process-table").hidden = processes.length === 0;
    $("no-processes").hidden = processes.length > 0;
  }

  // The fleet's events per second and held shards over the last hour: two lines, each on its
  // own scale (events per second on the left, held shards on the right).
  function renderHistory(history, now) {
    const plot = $("history");
    const width = 600;
    const height = 160;
    const margin = { left: 48, right: 40, top: 10, bottom: 20 };
    const points = history
      .map((point) => ({ at: Date.parse(point.at), rate: point.events_per_second, held: point.held }))
      .filter((point) => now - point.at <= HISTORY_MS);
    plot.dataset.points = String(points.length);
    const x = (at) => margin.left + ((at - (now - HISTORY_MS)) / HISTORY_MS) * (width - margin.left - margin.right);
    const scale = (values) => Math.max(1, ...values);
    const rateTop = scale(points.map((point) => point.rate));
    const heldTop = scale(points.map((point) => point.held));
    const y = (value, top) => height - margin.bottom - (value / top) * (height - margin.top - margin.bottom);
    const element = (name, attributes, text) => {
      const node = document.createElementNS(SVG, name);
      for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
      if (text !== undefined) node.textContent = text;
      return node;
    };
    const line = (key, top, className) =>
      element("polyline", {
        class: className,
        points: points.map((point) => x(point.at).toFixed(1) + "," + y(point[key], top).toFixed(1)).join(" "),
      });
    const bottom = height - margin.bottom;
    plot.replaceChildren(
      element("line", { class: "axis", x1: margin.left, x2: width - margin.right, y1: bottom, y2: bottom }),
      element("text", { class: "tick", x: margin.left, y: height - 4 }, "60 min ago"),
      element("text", { class: "tick", x: width - margin.right, y: height - 4, "text-anchor": "end" }, "now"),
      element("text", { class: "tick rate", x: margin.left - 4, y: margin.top + 8, "text-anchor": "end" }, formatRate(rateTop)),
      element("text", { class: "tick held", x: width - margin.right + 4, y: margin.top + 8 }, heldTop.toLocaleString()),
      line("rate", rateTop, "series rate"),
      line("held", heldTop, "series held")
    );
    $("history-empty").hidden = points.length > 0;
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
    const events =
      typeof shard.events_per_second === "number" ? formatRate(shard.events_per_second) : "–";
    $("detail").textContent =
      "Shard " + id + ": last beat " + age + " s ago, latency " + latency + ", " + guilds + " guilds, " +
      events + " events/s" + (shard.process ? ", process " + shard.process : "");
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
