// The live page: active calls and their transcripts as they arrive, and the worker's health.
// Plain JavaScript, no build step. Every piece of text goes in with textContent (no HTML
// parsing anywhere), so nothing a call carries can become markup.
"use strict";

const LINGER_MS = 4000;       // an ended call stays visible this long, then leaves
const STALE_MS = 15000;       // a call the worker no longer lists and that said nothing for this long leaves
const POLL_MS = 2000;         // /health and /v1/sessions
const MAX_LINES = 300;        // per call, oldest dropped: the page never grows without bound
const CHANNELS = ["Customer", "Agent"];
const EVENT_TYPES = ["session_started", "transcript", "utterance_end", "speech_started",
                     "dtmf", "error", "provider_changed", "session_ended", "events_dropped"];

const token = new URLSearchParams(window.location.search).get("token");
const calls = new Map();      // interaction_id -> call view
const callsEl = document.getElementById("calls");
const emptyEl = document.getElementById("empty");
const linkEl = document.getElementById("link");

/** An API URL relative to the page, carrying ?token= when the page was opened with one. */
function apiUrl(path, params) {
  const url = new URL(path, window.location.href);
  for (const [key, value] of Object.entries(params || {})) url.searchParams.set(key, value);
  if (token) url.searchParams.set("token", token);
  return url.toString();
}

function clock(seconds) {
  const s = Math.max(0, Number(seconds) || 0);
  const m = Math.floor(s / 60);
  const rest = (s - m * 60).toFixed(1).padStart(4, "0");
  return `${m}:${rest}`;
}

function channelName(channel) {
  return CHANNELS[channel] || `Channel ${channel}`;
}

function setText(el, text) {
  el.textContent = text == null ? "" : String(text);
}

// --- calls -----------------------------------------------------------------------------

function callView(id) {
  let call = calls.get(id);
  if (call) return call;
  const node = document.getElementById("call-template").content.firstElementChild.cloneNode(true);
  node.dataset.interactionId = id;
  setText(node.querySelector(".call-id"), id);
  call = {
    id,
    node,
    lines: node.querySelector(".lines"),
    meta: node.querySelector(".call-meta"),
    state: node.querySelector(".call-state"),
    error: node.querySelector(".call-error"),
    interims: new Map(),  // channel -> <li>
    lastSeq: 0,
    listed: false,
    ended: false,
    lastHeard: Date.now(),
    removeTimer: null,
  };
  setState(call, "active");
  calls.set(id, call);
  callsEl.prepend(node);
  emptyEl.hidden = true;
  return call;
}

function setState(call, state) {
  call.node.dataset.state = state;
  setText(call.state, state);
}

function removeCall(call) {
  if (call.removeTimer) clearTimeout(call.removeTimer);
  call.node.remove();
  calls.delete(call.id);
  emptyEl.hidden = calls.size > 0;
}

function resetCall(call) {
  call.lines.replaceChildren();
  call.interims.clear();
  call.ended = false;
  if (call.removeTimer) clearTimeout(call.removeTimer);
  call.removeTimer = null;
  call.error.hidden = true;
  setState(call, "active");
}

function newLine(event, kind) {
  const li = document.getElementById("line-template").content.firstElementChild.cloneNode(true);
  const channel = Number(event.channel) || 0;
  li.classList.add(kind, `ch${Math.min(channel, 2)}`);
  li.dataset.channel = String(channel);
  return li;
}

function fillLine(li, event) {
  const at = li.querySelector(".at");
  setText(at, clock(event.start));
  if (event.timestamp_ms) {
    const when = new Date(event.timestamp_ms);
    at.dateTime = when.toISOString();
    at.title = when.toLocaleTimeString();
  }
  setText(li.querySelector(".who"), channelName(Number(event.channel) || 0));
  setText(li.querySelector(".text"), event.text);
}

function scrollToEnd(call) {
  call.lines.scrollTop = call.lines.scrollHeight;
}

function onTranscript(call, event) {
  const channel = Number(event.channel) || 0;
  let interim = call.interims.get(channel);
  if (!event.is_final) {
    if (!interim) {
      interim = newLine(event, "interim");
      interim.title = "provisional: may still change";
      call.interims.set(channel, interim);
    }
    fillLine(interim, event);
    call.lines.append(interim);  // interims stay below the settled lines
    scrollToEnd(call);
    return;
  }
  if (interim) {
    interim.remove();
    call.interims.delete(channel);
  }
  if (!event.text) return;  // a finalize that confirmed nothing new
  const line = newLine(event, "final");
  fillLine(line, event);
  insertSettled(call, line, Number(event.start) || 0);
  trimLines(call);
  scrollToEnd(call);
}

function onEvent(event) {
  const id = event.interaction_id;
  if (typeof id !== "string" || !id) return;
  if (event.type === "events_dropped") {
    const call = calls.get(id);
    if (call) showError(call, `${event.count} events were dropped: this page fell behind`);
    return;
  }
  let call = calls.get(id);
  if (!call && event.type === "session_ended") return;  // a call this page never saw
  call = callView(id);
  const seq = Number(event.seq) || 0;
  if (event.type === "session_started" && seq === 1 && call.lastSeq > 0) resetCall(call);
  if (seq && seq <= call.lastSeq) return;  // already shown (a replay after reconnecting)
  if (seq) call.lastSeq = seq;
  call.lastHeard = Date.now();
  switch (event.type) {
    case "session_started":
      setText(call.meta, describeFormat(event));
      break;
    case "transcript":
      onTranscript(call, event);
      break;
    case "dtmf":
      onKey(call, event);
      break;
    case "error":
      showError(call, `${event.code}: ${event.message}`);
      break;
    case "provider_changed":
      showError(call, `moved from ${event.from} to ${event.to} (${event.reason}) at ${clock(event.at)}`);
      break;
    case "session_ended":
      endCall(call, event.reason);
      break;
    default:
      break;
  }
}

function onKey(call, event) {
  const line = newLine(event, "key");
  fillLine(line, { channel: event.channel, start: event.at, text: `pressed ${event.digit}` });
  insertSettled(call, line, Number(event.at) || 0);
  trimLines(call);
  scrollToEnd(call);
}

/** Settled lines (finals, key presses) stay in call-time order: a final arrives only after the
 * speech it covers, so a key pressed meanwhile would otherwise sit above words said before it. */
function insertSettled(call, line, atSeconds) {
  line.dataset.at = String(atSeconds);
  const settled = [...call.lines.querySelectorAll(".final, .key")];
  const later = settled.find((other) => Number(other.dataset.at) > atSeconds);
  call.lines.insertBefore(line, later || call.lines.querySelector(".interim"));
}

function trimLines(call) {
  const settled = call.lines.querySelectorAll(".final, .key");
  for (let i = 0; i < settled.length - MAX_LINES; i++) settled[i].remove();
}

function showError(call, text) {
  setText(call.error, text);
  call.error.hidden = false;
}

function endCall(call, reason) {
  if (call.ended) return;
  call.ended = true;
  for (const interim of call.interims.values()) interim.remove();
  call.interims.clear();
  setState(call, `ended (${reason || "end"})`);
  call.node.classList.add("leaving");
  call.removeTimer = setTimeout(() => removeCall(call), LINGER_MS);
}

function describeFormat(info) {
  const parts = [];
  if (info.tenant_id) parts.push(`tenant ${info.tenant_id}`);
  if (info.encoding) parts.push(`${info.encoding} ${info.sample_rate} Hz × ${info.channels}`);
  return parts.join(" · ");
}

// --- polling: the call list and health -------------------------------------------------

async function getJson(path) {
  const response = await fetch(apiUrl(path), { cache: "no-store" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function pollSessions() {
  const body = await getJson("v1/sessions");
  const listed = new Set();
  for (const session of body.sessions || []) {
    listed.add(session.interaction_id);
    const call = callView(session.interaction_id);
    call.listed = true;
    const meta = [describeFormat(session), `provider ${session.provider_state}`,
                  `${Number(session.audio_s).toFixed(1)} s audio`, `${session.sources} source(s)`];
    if (session.reconnects) meta.push(`${session.reconnects} reconnect(s)`);
    setText(call.meta, meta.filter(Boolean).join(" · "));
    if (!call.ended) setState(call, session.phase);
  }
  const now = Date.now();
  for (const call of [...calls.values()]) {
    if (!listed.has(call.id) && !call.ended && now - call.lastHeard > STALE_MS) removeCall(call);
  }
}

async function pollHealth() {
  const h = await getJson("health");
  const fields = {
    status: h.draining ? `${h.status} (draining)` : h.status,
    provider: h.provider,
    calls: `${h.activeCalls} / ${h.maxSessions}`,
    connections: h.activeConnections,
    sources: h.activeSources,
    buffered: `${Number(h.bufferedAudioSeconds || 0).toFixed(1)} s`,
    uptime: clock(h.uptimeSeconds),
  };
  for (const [name, value] of Object.entries(fields)) {
    const dd = document.querySelector(`#health [data-field="${name}"]`);
    if (dd) setText(dd, value);
  }
  document.getElementById("health").dataset.status = h.status;
}

function every(ms, fn) {
  const run = () => fn().catch((err) => console.warn(err.message));
  run();
  setInterval(run, ms);
}

// --- the event stream ------------------------------------------------------------------

function connect() {
  const source = new EventSource(apiUrl("v1/events", { replay: "200" }));
  const setLink = (state, text) => { linkEl.dataset.state = state; setText(linkEl, text); };
  source.onopen = () => setLink("live", "live");
  // A call's `error` events arrive as SSE events named "error", which EventSource also hands
  // to onerror: only a dropped connection (no longer OPEN) means reconnecting.
  source.onerror = () => {
    if (source.readyState !== EventSource.OPEN) setLink("retrying", "reconnecting…");
  };
  for (const type of EVENT_TYPES) {
    source.addEventListener(type, (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      onEvent(event);
    });
  }
}

/** A worker with ASR_WORKER_TOKEN shows its calls only to a page that carries the token: say
 * so, instead of an empty list and a stream that retries forever. /health needs no token. */
async function start() {
  const probe = await fetch(apiUrl("v1/sessions"), { cache: "no-store" }).catch(() => null);
  if (probe && probe.status === 401) {
    linkEl.dataset.state = "denied";
    setText(linkEl, "token needed");
    setText(document.getElementById("empty"), token
      ? "This page's token is not this worker's. Open the page as /?token=… with the worker's ASR_WORKER_TOKEN."
      : "This worker needs its token to show calls. Open the page as /?token=… with the worker's ASR_WORKER_TOKEN.");
    every(POLL_MS, pollHealth);
    return;
  }
  connect();
  every(POLL_MS, pollSessions);
  every(POLL_MS, pollHealth);
}

start();
