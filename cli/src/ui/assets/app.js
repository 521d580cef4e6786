// Blackboard's live view. Plain JavaScript, no build step: reads the JSON API and follows
// the server-sent event stream; the access token comes from this page's URL.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const $ = (id) => document.getElementById(id);
const state = {
  doc: null,          // the document shown
  expanded: new Set([""]),
  marks: new Map(),   // path -> {agent, message, seq}: the latest change at each path
  conflicts: new Map(), // path -> [{value, winner, agent, seq}], from the document's answer
  selected: null,     // the timeline event shown
  next: null,         // the timeline's next page
  presence: null,     // the EventSource of the shown document's presence
};

function api(path, params) {
  const url = new URL(path, location.origin);
  url.searchParams.set("token", token);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null) url.searchParams.set(k, v);
  }
  return url.toString();
}

async function get(path, params) {
  const response = await fetch(api(path, params), { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function showError(e) {
  $("error").textContent = e ? String(e.message || e) : "";
}

function time(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function who(e) {
  return e.agent + (e.message ? ": " + e.message : "");
}

// JSON Pointer segments, as the board writes paths.
function segment(key) {
  return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

// ---- documents --------------------------------------------------------------------------

async function loadDocuments() {
  const answer = await get("/api/documents");
  $("space").textContent = answer.space;
  const list = $("documents");
  list.replaceChildren();
  for (const d of answer.documents) {
    const last = d.last
      ? el("div", { class: "muted" }, `#${d.last.seq} ${who(d.last)} · ${time(d.last.logged_ms)}`)
      : null;
    const item = el("li", { "data-doc": d.document, class: d.document === state.doc ? "current" : "" },
      el("button", { type: "button", onclick: () => openDocument(d.document) },
        el("span", { class: "name" }, d.document), " ",
        el("small", { class: "events" }, `${d.events} event${d.events === 1 ? "" : "s"}`),
        last));
    list.append(item);
  }
  if (!state.doc && answer.documents.length > 0) {
    const wanted = decodeURIComponent(location.hash.replace(/^#doc=/, ""));
    const first = answer.documents.find((d) => d.document === wanted) || answer.documents[0];
    await openDocument(first.document);
  }
}

async function openDocument(name) {
  if (state.doc !== name) {
    state.doc = name;
    state.marks.clear();
    state.conflicts.clear();
    state.selected = null;
    state.expanded = new Set([""]);
    history.replaceState(null, "", location.pathname + location.search + "#doc=" + encodeURIComponent(name));
    for (const li of $("documents").children) {
      li.classList.toggle("current", li.dataset.doc === name);
    }
    $("diff").replaceChildren();
    $("at-json").textContent = "";
    $("at-event").textContent = "";
    $("blame").replaceChildren();
  }
  $("doc-title").textContent = name;
  followDocPresence(name);
  await Promise.all([loadTree(), loadTimeline()]);
}

// ---- the tree ---------------------------------------------------------------------------

async function loadTree() {
  if (!state.doc) return;
  const answer = await get("/api/doc/" + encodeURIComponent(state.doc));
  if (answer.document !== state.doc) return;
  $("doc-seq").textContent = "at #" + answer.seq;
  $("tree").dataset.seq = String(answer.seq);
  state.conflicts = new Map(answer.conflicts.map((c) => [c.path, c.values]));
  const tree = $("tree");
  tree.replaceChildren(node(answer.json, "", null, 0));
  applyMarks();
}

const PAGE = 500; // children rendered at once; the rest behind a button

function node(value, path, key, depth) {
  const label = key === null ? "(document)" : key;
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const open = state.expanded.has(path) || depth < 2;
    const details = el("details", { "data-path": path });
    const summary = el("summary", {},
      el("span", { class: "key", onclick: (ev) => { ev.preventDefault(); blame(path || "/"); } }, label),
      el("small", {}, Array.isArray(value) ? ` [${entries.length}]` : ` {${entries.length}}`));
    details.append(summary);
    const body = el("div");
    details.append(body);
    let filled = false;
    const fill = () => {
      if (filled) return;
      filled = true;
      const more = (from) => {
        for (const [k, v] of entries.slice(from, from + PAGE)) {
          body.append(node(v, path + "/" + segment(k), k, depth + 1));
        }
        if (entries.length > from + PAGE) {
          const button = el("button", { type: "button" }, `${entries.length - from - PAGE} more`);
          button.addEventListener("click", () => { button.remove(); more(from + PAGE); applyMarks(); });
          body.append(button);
        }
      };
      more(0);
    };
    // Children are built when first opened, so a huge document renders only what is seen.
    details.addEventListener("toggle", () => {
      if (details.open) { state.expanded.add(path); fill(); applyMarks(); }
      else state.expanded.delete(path);
    });
    if (open) { details.open = true; fill(); }
    return details;
  }
  const kind = typeof value === "string" ? "str" : typeof value === "number" ? "num" : "lit";
  return el("div", { class: "leaf", "data-path": path },
    el("span", { class: "key", onclick: () => blame(path) }, label), ": ",
    el("span", { class: kind }, typeof value === "string" ? value : JSON.stringify(value)));
}

// The element showing `path`, or its nearest shown ancestor (inside a closed parent).
function shown(path) {
  let p = path;
  for (;;) {
    const found = $("tree").querySelector(`[data-path="${CSS.escape(p)}"]`);
    if (found) return found;
    if (p === "") return null;
    p = p.slice(0, p.lastIndexOf("/"));
  }
}

function applyMarks() {
  for (const old of $("tree").querySelectorAll(".who, .conflict-values")) old.remove();
  for (const old of $("tree").querySelectorAll(".changed, .conflict")) {
    old.classList.remove("changed", "conflict");
  }
  for (const [path, mark] of state.marks) {
    const target = shown(path);
    if (!target) continue;
    target.classList.add("changed");
    const where = target.tagName === "DETAILS" ? target.querySelector("summary") : target;
    if (!where.querySelector(":scope > .who")) {
      where.append(el("span", { class: "who", title: `#${mark.seq}` }, who(mark)));
    }
  }
  for (const [path, values] of state.conflicts) {
    const target = shown(path);
    if (!target) continue;
    target.classList.add("conflict");
    const where = target.tagName === "DETAILS" ? target.querySelector("summary") : target;
    const written = (v) => JSON.stringify(v.value) + " by " + (v.agent || "an unknown writer") +
      (v.seq ? ` (#${v.seq})` : "") + (v.winner ? ", shown" : "");
    where.append(el("span", { class: "conflict-values" },
      "conflict: " + values.map(written).join(" | ")));
  }
}

// ---- the timeline -----------------------------------------------------------------------

function eventItem(e) {
  const item = el("li", { "data-seq": e.seq, class: state.selected === e.seq ? "selected" : "" },
    el("span", { class: "seq" }, "#" + e.seq), " ",
    el("b", {}, e.agent), " ",
    e.message ? el("span", { class: "message" }, e.message) : null, " ",
    el("small", {}, time(e.logged_ms)),
    el("div", { class: "paths" }, e.paths.join(" ")));
  item.addEventListener("click", (ev) => {
    if (ev.shiftKey && state.selected !== null) showRange(state.selected, e.seq);
    else showAt(e.seq);
  });
  return item;
}

// A change the roster rejected, in the timeline: it never applied, so there is nothing to
// show at it; it is marked, with its reason.
function rejectedItem(r) {
  return el("li", { "data-seq": r.seq, class: "rejected" },
    el("span", { class: "seq" }, "#" + r.seq), " ",
    el("b", {}, r.agent), " ",
    el("span", { class: "message" }, "rejected"),
    el("div", { class: "paths" }, r.reason));
}

async function loadTimeline(older) {
  if (!state.doc) return;
  const answer = await get(`/api/doc/${encodeURIComponent(state.doc)}/timeline`,
    { before: older ? state.next : null, limit: 50 });
  const list = $("timeline");
  if (!older) list.replaceChildren();
  // Both newest first: the rejected changes go between the events, at their positions.
  const rejected = answer.rejected || [];
  let r = 0;
  for (const e of answer.events) {
    while (r < rejected.length && rejected[r].seq > e.seq) list.append(rejectedItem(rejected[r++]));
    list.append(eventItem(e));
  }
  while (r < rejected.length) list.append(rejectedItem(rejected[r++]));
  state.next = answer.next;
  $("older").hidden = answer.next === null;
}

function diffList(patches) {
  const list = $("diff");
  list.replaceChildren();
  if (patches.length === 0) list.append(el("li", { class: "muted" }, "no change"));
  for (const p of patches) {
    let what = "";
    if ("value" in p) what = JSON.stringify(p.value);
    else if ("values" in p) what = p.values.map((v) => JSON.stringify(v)).join(", ");
    else if ("text" in p) what = JSON.stringify(p.text) + " at " + p.index;
    else if ("count" in p) what = p.count + (p.index !== null ? " from " + p.index : "");
    if (p.kind === "conflict") what = "winner " + JSON.stringify(p.winner) + " of " + what;
    list.append(el("li", { "data-path": p.path, class: p.kind === "conflict" ? "conflict" : "" },
      el("span", { class: "op" }, p.kind), " ", el("b", {}, p.path), " ", what));
  }
}

function select(seqs) {
  for (const li of $("timeline").children) {
    const seq = Number(li.dataset.seq);
    li.classList.toggle("selected", seq === seqs[0]);
    li.classList.toggle("range", seqs.length === 2 && seq > Math.min(...seqs) && seq <= Math.max(...seqs));
  }
}

async function showAt(seq) {
  try {
    const answer = await get(`/api/doc/${encodeURIComponent(state.doc)}/at/${seq}`);
    state.selected = seq;
    select([seq]);
    $("at-title").textContent = `At event #${seq}`;
    $("at-event").textContent = answer.event
      ? `${who(answer.event)} · ${time(answer.event.logged_ms)} · diff to the event before`
      : "";
    diffList(answer.diff);
    $("at-json").textContent = JSON.stringify(answer.json, null, 2);
    // Says which event is shown, so a reader (or a test) can wait for this one.
    $("at-json").dataset.seq = String(seq);
    showError(null);
  } catch (e) { showError(e); }
}

async function showRange(a, b) {
  const [from, to] = [Math.min(a, b), Math.max(a, b)];
  try {
    // From just before the earlier event, so both ends' changes are in the diff.
    const answer = await get(`/api/doc/${encodeURIComponent(state.doc)}/diff`,
      { from: String(from - 1), to: String(to) });
    const at = await get(`/api/doc/${encodeURIComponent(state.doc)}/at/${to}`);
    select([a, b]);
    $("at-title").textContent = `From event #${from} to #${to}`;
    $("at-event").textContent = "the diff of the events in the range";
    diffList(answer.diff);
    $("at-json").textContent = JSON.stringify(at.json, null, 2);
    $("at-json").dataset.seq = `${from}-${to}`;
    showError(null);
  } catch (e) { showError(e); }
}

// ---- blame ------------------------------------------------------------------------------

// A light colour per agent, the same on every load.
function colour(agent) {
  let h = 0;
  for (const c of agent) h = (h * 31 + c.codePointAt(0)) % 360;
  return `hsl(${h}, 70%, 85%)`;
}

async function blame(path) {
  $("blame-path").value = path;
  const out = $("blame");
  out.replaceChildren();
  try {
    const b = await get(`/api/doc/${encodeURIComponent(state.doc)}/blame`, { path });
    const r = b.record;
    out.append(el("div", { class: "blamed", "data-path": b.path },
      el("b", {}, b.path), " was written by ",
      r ? el("b", { class: "agent" }, r.agent) : "an unacknowledged local change",
      r ? ` at ${time(r.logged_ms)} (#${r.seq})` : "",
      r && r.message ? el("span", {}, ": ", el("i", { class: "message" }, r.message)) : ""));
    if (b.runs && b.runs.length) {
      // The text with each run of characters coloured by its writer; hover names the
      // agent, the message and the position.
      const runs = el("div", { class: "runs", "data-path": b.path });
      for (const r of b.runs) {
        const agent = r.agent || "(not on the log yet)";
        const span = el("span", { class: "run", "data-agent": agent, "data-start": r.start,
          title: `${agent}${r.message ? ": " + r.message : ""}${r.seq ? " · #" + r.seq : ""}` }, r.text);
        span.style.backgroundColor = colour(agent);
        runs.append(span);
      }
      out.append(runs);
      const rows = el("ul", { class: "run-list" });
      for (const r of b.runs) {
        rows.append(el("li", { "data-agent": r.agent || "" },
          el("span", { class: "swatch" }, "\u00a0\u00a0"), " ",
          `${r.start}–${r.end} `, el("b", {}, r.agent || "(not on the log yet)"),
          r.seq ? ` #${r.seq}` : "", r.message ? el("i", {}, " " + r.message) : "", " ",
          el("span", { class: "muted" }, JSON.stringify(r.text))));
        rows.lastChild.querySelector(".swatch").style.backgroundColor = colour(r.agent || "");
      }
      out.append(rows);
    }
    showError(null);
  } catch (e) {
    out.append(el("div", { class: "error" }, String(e.message || e)));
  }
}

$("blame-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (state.doc) blame($("blame-path").value.trim() || "/");
});
$("older").addEventListener("click", () => loadTimeline(true).catch(showError));

// ---- presence and claims ----------------------------------------------------------------

function showPresence(members, list) {
  list.replaceChildren();
  if (members.length === 0) list.append(el("li", { class: "muted" }, "nobody"));
  for (const m of members) {
    list.append(el("li", { "data-agent": m.agent }, el("b", {}, m.agent),
      m.status ? " — " + m.status : "", el("div", { class: "muted" }, "since " + m.since)));
  }
}

// The shown document's presence has its own event stream, from a watch of that document:
// who opens or leaves it shows at once, whatever happens elsewhere in the space.
function followDocPresence(name) {
  if (state.presence && state.presence.doc === name) return;
  if (state.presence) state.presence.close();
  const list = $("doc-presence");
  list.replaceChildren();
  delete list.dataset.doc;
  const source = new EventSource(api(`/api/doc/${encodeURIComponent(name)}/presence`));
  source.doc = name;
  source.addEventListener("presence", (ev) => {
    if (state.doc !== name) return;
    showPresence(JSON.parse(ev.data), list);
    // Says whose presence is shown, so a reader (or a test) knows it is this document's.
    list.dataset.doc = name;
  });
  state.presence = source;
}

function showClaims(claims) {
  const list = $("claims");
  list.replaceChildren();
  if (claims.length === 0) list.append(el("li", { class: "muted" }, "none held"));
  for (const c of claims) {
    list.append(el("li", { "data-resource": c.resource },
      el("b", {}, c.resource), " held by ", el("span", { class: "holder" }, c.holder),
      el("div", { class: "muted" }, `token ${c.token} · until ${c.expires}`)));
  }
}

// ---- rejected changes -------------------------------------------------------------------

function showRejections(rejections) {
  const list = $("rejected");
  list.replaceChildren();
  if (rejections.length === 0) list.append(el("li", { class: "muted" }, "none"));
  // Newest first, like the timeline.
  for (const r of rejections.slice().reverse()) {
    list.append(el("li", { "data-doc": r.document, "data-seq": r.seq },
      el("b", {}, r.document), " ", el("span", { class: "seq" }, "#" + r.seq), " by ",
      el("span", { class: "agent" }, r.agent),
      el("div", { class: "reason" }, r.reason),
      r.time ? el("div", { class: "muted" }, r.time) : null));
  }
}

// ---- live -------------------------------------------------------------------------------

// Reloads asked for while one is running are merged into the next, so a burst of changes
// costs a few reads, not a few per change.
const reload = { docs: false, tree: false, timeline: false, running: false };

function refresh(what) {
  Object.assign(reload, what);
  if (reload.running) return;
  reload.running = true;
  (async () => {
    while (reload.docs || reload.tree || reload.timeline) {
      const now = { docs: reload.docs, tree: reload.tree, timeline: reload.timeline };
      Object.assign(reload, { docs: false, tree: false, timeline: false });
      await Promise.all([
        now.docs ? loadDocuments() : null,
        now.tree ? loadTree() : null,
        now.timeline ? loadTimeline() : null,
      ]).catch(showError);
    }
    reload.running = false;
  })();
}

function onChange(change) {
  if (change.document !== state.doc) { refresh({ docs: true }); return; }
  for (const p of change.patches) {
    state.marks.set(p.path, { agent: change.agent, message: change.message, seq: change.seq });
  }
  // Only the first page follows live; an older page the reader opened stays put.
  const follow = state.next === null || $("timeline").children.length <= 50;
  refresh({ docs: true, tree: true, timeline: follow });
}

// Reads everything again: the documents, and the open document (loadDocuments opens the
// first one itself when none is open yet, so it is not loaded twice).
function reloadAll() {
  const open = state.doc;
  loadDocuments().then(() => open && openDocument(open)).catch(showError);
}

function connect() {
  const source = new EventSource(api("/api/events"));
  source.addEventListener("ready", () => {
    $("status").textContent = "live";
    $("status").classList.add("live");
    reloadAll();
  });
  source.addEventListener("change", (ev) => onChange(JSON.parse(ev.data)));
  source.addEventListener("claims", (ev) => showClaims(JSON.parse(ev.data)));
  source.addEventListener("rejections", (ev) => {
    const rejections = JSON.parse(ev.data);
    showRejections(rejections);
    const last = rejections[rejections.length - 1];
    // Only the first page follows live, as for changes.
    if (last && last.document === state.doc &&
        (state.next === null || $("timeline").children.length <= 50)) {
      refresh({ timeline: true });
    }
  });
  source.addEventListener("presence", (ev) => showPresence(JSON.parse(ev.data), $("presence")));
  source.addEventListener("resync", () => {
    reloadAll();
  });
  source.addEventListener("error", () => {
    $("status").textContent = "reconnecting";
    $("status").classList.remove("live");
  });
}

connect();
