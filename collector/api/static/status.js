"use strict";
// The collector's status page. Plain script, no build step, no library: it reads the JSON API
// of the collector that served it, with the browser's own credentials (the token typed as the
// password at the login prompt), so it shows what that token's districts allow and no more.
//
// Live: /v1/stream (server-sent events) for status, alarm and gap events. A gateway whose last
// will fires, or a new alarm, shows as soon as the collector commits it (the stream wakes on
// every commit), where a poll would show it only at its next turn and cost requests from the
// token's rate bucket all the while. Readings are not followed live: sparklines are one-minute
// buckets, re-read with everything else every minute (which also catches gateways that went
// quiet without a last will: the API judges them offline by time). When the stream cannot be
// had at all, the page polls every 5 seconds instead.

const HOUR_MS = 3600 * 1000;
const RELOAD_MS = 60 * 1000;
const POLL_MS = 5 * 1000;
// EventSource gives up for good on an answer other than a stream (a 503 while the database
// does not answer, the collector restarting behind a proxy): the page polls, and opens the
// stream again this much later (the 503's Retry-After is 5 s; a minute spares a struggling
// collector a page that reconnects every few seconds).
const REOPEN_MS = 60 * 1000;
const GAPS_SETTLE_MS = 500;
const BUCKET_MS = 60 * 1000;
const SVG_NS = "http://www.w3.org/2000/svg";
const SPARK_WIDTH = 160;
const SPARK_HEIGHT = 28;

const state = {
  gateways: new Map(), // gateway id -> the /v1/gateways item
  alarms: new Map(), // "gateway/alarm_id" -> an active /v1/alarms item
  gaps: [], // open /v1/gaps items
  series: new Map(), // "gateway/point" -> {gateway, point, unit, last, values: [[ms, avg]]}
};

let reloading = null; // the reload under way, if any
let heldEvents = null; // events that arrived during it, applied after it (in order)
let gapsTimer = null;

class ApiError extends Error {}

// Every item of a list endpoint, following `next`.
async function getAll(path, params) {
  const items = [];
  let cursor = null;
  do {
    const query = new URLSearchParams(params);
    if (cursor !== null) query.set("cursor", cursor);
    const response = await fetch(`${path}?${query}`, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail;
      } catch (_) {
        // not a problem document: the status line says enough
      }
      throw new ApiError(`${path}: ${response.status} ${detail}`);
    }
    const page = await response.json();
    items.push(...page.items);
    cursor = page.next;
  } while (cursor !== null);
  return items;
}

const alarmKey = (alarm) => `${alarm.gateway}/${alarm.alarm_id}`;

async function readSeries() {
  const from = new Date(Date.now() - HOUR_MS).toISOString();
  const buckets = await getAll("/v1/readings", { every: "1m", from, limit: "10000" });
  const series = new Map();
  for (const bucket of buckets) {
    const key = `${bucket.gateway}/${bucket.point}`;
    let line = series.get(key);
    if (line === undefined) {
      line = { gateway: bucket.gateway, point: bucket.point, unit: bucket.unit, last: null, values: [] };
      series.set(key, line);
    }
    line.values.push([Date.parse(bucket.t), bucket.avg]);
    line.unit = bucket.unit;
    if (bucket.last !== null) line.last = bucket.last;
  }
  return series;
}

// Read everything again; events arriving meanwhile are held and applied on top, in order.
function reload() {
  if (reloading !== null) return reloading;
  heldEvents = [];
  reloading = (async () => {
    try {
      const [gateways, alarms, gaps, series] = await Promise.all([
        getAll("/v1/gateways", { limit: "10000" }),
        getAll("/v1/alarms", { active: "true", limit: "10000" }),
        getAll("/v1/gaps", { state: "open", limit: "10000" }),
        readSeries(),
      ]);
      state.gateways = new Map(gateways.map((g) => [g.gateway, g]));
      state.alarms = new Map(alarms.map((a) => [alarmKey(a), a]));
      state.gaps = gaps;
      state.series = series;
      showProblem(null);
      document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    } catch (error) {
      showProblem(error instanceof ApiError ? error.message : `cannot reach the collector: ${error}`);
    } finally {
      const held = heldEvents;
      heldEvents = null;
      reloading = null;
      for (const [kind, item] of held) apply(kind, item);
      render();
    }
  })();
  return reloading;
}

async function reloadGaps() {
  try {
    const [gateways, gaps] = await Promise.all([
      getAll("/v1/gateways", { limit: "10000" }),
      getAll("/v1/gaps", { state: "open", limit: "10000" }),
    ]);
    state.gateways = new Map(gateways.map((g) => [g.gateway, g]));
    state.gaps = gaps;
    render();
  } catch (error) {
    showProblem(`${error.message || error}`);
  }
}

function apply(kind, item) {
  if (kind === "status") {
    const gateway = state.gateways.get(item.gateway);
    if (gateway === undefined) {
      reload(); // a gateway this page has not seen yet: read the list again
      return;
    }
    gateway.online = item.online;
    gateway.last_seen = item.at;
  } else if (kind === "alarm") {
    // `active` as the collector judged it writing the event: a raise stamped ahead of its
    // clock is not, and gets an event of its own, active, once that clock reaches it (the
    // browser's clock cannot tell: asking the collector again at each such event would re-read
    // without pause for a gateway far ahead raising every second). A collector before `active`
    // (one behind the same address during a rolling upgrade) does not say: raised and not
    // cleared is as near as the event tells, where taking it for inactive dropped every alarm;
    // but a raise flagged ahead_of_collector (stamped days ahead, say) is not yet, as that
    // collector's GET /v1/alarms says, and the once-a-minute re-read shows it once it is.
    const active =
      item.active === undefined
        ? Boolean(item.raised_at && !item.cleared_at && !(item.flags || []).includes("ahead_of_collector"))
        : item.active;
    if (active) state.alarms.set(alarmKey(item), item);
    else state.alarms.delete(alarmKey(item));
  } else if (kind === "gap") {
    // A gap event is a record or a hole filled: the open holes are re-read, a burst at once.
    clearTimeout(gapsTimer);
    gapsTimer = setTimeout(reloadGaps, GAPS_SETTLE_MS);
  }
}

function onEvent(kind, message) {
  const item = JSON.parse(message.data);
  if (heldEvents !== null) {
    heldEvents.push([kind, item]);
    return;
  }
  apply(kind, item);
  render();
}

function setLive(text) {
  const live = document.getElementById("live");
  live.dataset.live = text;
  live.textContent = text;
}

function follow() {
  const source = new EventSource("/v1/stream?types=status,alarm,gap");
  // Each (re)connection starts at the feed's head: what happened before it is read afresh.
  source.addEventListener("open", () => {
    setLive("live");
    // After any read already under way, which may have started before the stream's head.
    (reloading || Promise.resolve()).then(reload);
  });
  source.addEventListener("error", () => {
    if (source.readyState !== EventSource.CLOSED) {
      setLive("reconnecting"); // EventSource resumes by itself with Last-Event-ID
      return;
    }
    setLive(`polling every ${POLL_MS / 1000} s`);
    const polling = setInterval(reload, POLL_MS);
    setTimeout(() => {
      clearInterval(polling);
      follow(); // reads everything afresh once it is open
    }, REOPEN_MS);
  });
  for (const kind of ["status", "alarm", "gap"]) {
    source.addEventListener(kind, (message) => onEvent(kind, message));
  }
}

function showProblem(text) {
  const problem = document.getElementById("problem");
  problem.hidden = text === null;
  problem.textContent = text === null ? "" : text;
}

// An element; string children become text nodes (nothing from the API is parsed as HTML).
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

const shownTime = (iso) => (iso === null ? "never" : iso.replace("T", " ").replace(/\.\d+/, ""));
const shownValue = (value, unit) => (value === null ? "–" : `${value} ${unit}`);

// One line over the last hour; a minute without a value breaks it, so an outage shows.
function sparkline(line, now) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("width", SPARK_WIDTH);
  svg.setAttribute("height", SPARK_HEIGHT);
  svg.setAttribute("viewBox", `0 0 ${SPARK_WIDTH} ${SPARK_HEIGHT}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${line.point}, last hour`);
  const known = line.values.filter(([, value]) => value !== null);
  if (known.length === 0) return svg;
  let low = Math.min(...known.map(([, value]) => value));
  let high = Math.max(...known.map(([, value]) => value));
  if (high === low) {
    low -= 1;
    high += 1;
  }
  const start = now - HOUR_MS;
  const x = (t) => Math.min(SPARK_WIDTH, Math.max(0, ((t - start) / HOUR_MS) * SPARK_WIDTH));
  const y = (value) => SPARK_HEIGHT - 2 - ((value - low) / (high - low)) * (SPARK_HEIGHT - 4);
  let d = "";
  let previous = null;
  for (const [t, value] of line.values) {
    if (value === null) {
      previous = null;
      continue;
    }
    const joined = previous !== null && t - previous <= BUCKET_MS * 1.5;
    d += `${joined ? "L" : "M"}${x(t).toFixed(1)} ${y(value).toFixed(1)}`;
    previous = t;
  }
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", d);
  const [lastT, lastValue] = known[known.length - 1];
  const dot = document.createElementNS(SVG_NS, "circle");
  dot.setAttribute("cx", x(lastT).toFixed(1));
  dot.setAttribute("cy", y(lastValue).toFixed(1));
  dot.setAttribute("r", "2");
  svg.append(path, dot);
  return svg;
}

function gatewayRow(gateway, lines, now) {
  const sparks = el("div", { class: "sparks" });
  for (const line of lines) {
    sparks.append(
      el(
        "div",
        { class: "spark", "data-point": line.point },
        el("span", { class: "point" }, line.point),
        sparkline(line, now),
        el("span", { class: "value" }, shownValue(line.last, line.unit)),
      ),
    );
  }
  const online = gateway.online ? "online" : "offline";
  return el(
    "tr",
    { "data-gateway": gateway.gateway, "data-online": String(gateway.online) },
    el("td", {}, el("div", { class: "gateway" }, gateway.gateway), el("div", { class: "enterprise" }, gateway.enterprise)),
    el("td", {}, el("span", { class: `state ${online}` }, online)),
    el("td", { class: "seen" }, shownTime(gateway.last_seen)),
    el("td", { class: gateway.gaps > 0 ? "gaps some" : "gaps" }, String(gateway.gaps)),
    el("td", {}, sparks),
  );
}

function renderGateways(now) {
  const byDistrict = new Map();
  for (const gateway of state.gateways.values()) {
    if (!byDistrict.has(gateway.district)) byDistrict.set(gateway.district, []);
    byDistrict.get(gateway.district).push(gateway);
  }
  const linesOf = new Map();
  for (const line of state.series.values()) {
    if (!linesOf.has(line.gateway)) linesOf.set(line.gateway, []);
    linesOf.get(line.gateway).push(line);
  }
  const districts = [];
  for (const district of [...byDistrict.keys()].sort()) {
    const gateways = byDistrict.get(district).sort((a, b) => a.gateway.localeCompare(b.gateway));
    const online = gateways.filter((g) => g.online).length;
    const body = el("tbody");
    for (const gateway of gateways) body.append(gatewayRow(gateway, linesOf.get(gateway.gateway) || [], now));
    districts.push(
      el(
        "section",
        { class: "district", "data-district": district },
        el("h3", {}, `District ${district}`, el("span", { class: "sub" }, ` ${online} of ${gateways.length} online`)),
        el(
          "table",
          {},
          el("thead", {}, el("tr", {}, ...["Gateway", "State", "Last seen", "Open gaps", "Points, last hour"].map((h) => el("th", {}, h)))),
          body,
        ),
      ),
    );
  }
  document.getElementById("districts").replaceChildren(...districts);
  document.getElementById("gateways-empty").hidden = districts.length > 0;
}

function renderAlarms() {
  const alarms = [...state.alarms.values()].sort((a, b) => (b.raised_at || "").localeCompare(a.raised_at || ""));
  const rows = alarms.map((alarm) =>
    el(
      "tr",
      { "data-alarm": alarmKey(alarm), "data-gateway": alarm.gateway },
      el("td", {}, shownTime(alarm.raised_at)),
      el("td", {}, alarm.gateway),
      el("td", {}, alarm.point),
      el("td", { class: "level" }, alarm.level),
      el("td", {}, shownValue(alarm.value, alarm.unit)),
      el("td", {}, shownValue(alarm.threshold, alarm.unit)),
    ),
  );
  document.querySelector("#alarms tbody").replaceChildren(...rows);
  document.getElementById("alarms-empty").hidden = rows.length > 0;
}

function renderGaps() {
  const rows = state.gaps.map((gap) =>
    el(
      "tr",
      { "data-gap": `${gap.gateway}/${gap.epoch}/${gap.from_seq}`, "data-gateway": gap.gateway },
      el("td", {}, gap.gateway),
      el("td", {}, gap.epoch === null ? "–" : gap.epoch),
      el("td", {}, `${gap.from_seq ?? "?"}–${gap.to_seq ?? ""}`),
      el("td", {}, gap.reason),
    ),
  );
  document.querySelector("#gaps tbody").replaceChildren(...rows);
  document.getElementById("gaps-empty").hidden = rows.length > 0;
}

function render() {
  const now = Date.now();
  renderGateways(now);
  renderAlarms();
  renderGaps();
  const gateways = [...state.gateways.values()];
  const online = gateways.filter((g) => g.online).length;
  document.getElementById("count-online").textContent = String(online);
  document.getElementById("count-offline").textContent = String(gateways.length - online);
  document.getElementById("count-alarms").textContent = String(state.alarms.size);
  document.getElementById("count-gaps").textContent = String(state.gaps.length);
}

follow();
reload();
setInterval(reload, RELOAD_MS);
