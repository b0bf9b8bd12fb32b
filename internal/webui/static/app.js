// tandem web console: polls /ui/api/status every second and draws it.
// Plain JS, no libraries; every value from the node goes in as text
// (textContent), never as HTML.
"use strict";

let csrf = "";
let role = "";
let last = null;       // the last status answered
let lastOK = null;     // when
let timer = null;
// ticket: the session the other node opened for this page; via: who
// answers now (null: this page's node; else the ticket, used by header).
let ticket = null;
let via = null;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}

async function call(method, path, body, through) {
  const t = through === undefined ? via : through;
  const opts = { method, credentials: "same-origin", headers: {} };
  if (t) {
    // The other node: its own session, by header, never a cookie.
    opts.credentials = "omit";
    opts.mode = "cors";
    opts.headers["X-Tandem-Session"] = t.session;
  }
  if (method === "POST") {
    opts.headers["Content-Type"] = "application/json";
    opts.headers["X-CSRF-Token"] = t ? t.csrf : csrf;
    opts.body = JSON.stringify(body || {});
  }
  const url = t ? t.url + path : path;
  const ctl = new AbortController();
  const timeout = setTimeout(() => ctl.abort(), path === "api/run" ? 120000 : 2500);
  opts.signal = ctl.signal;
  let r;
  try {
    r = await fetch(url, opts);
  } catch (e) {
    throw new Error(ctl.signal.aborted ? "no answer within the time allowed" : "no connection (" + e.message + ")");
  } finally {
    clearTimeout(timeout);
  }
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const msg = data && data.error ? data.error.message : r.status + " " + r.statusText;
    const err = new Error(msg);
    err.status = r.status;
    err.data = data;
    throw err;
  }
  return data;
}

function showLogin(msg) {
  if (timer) { clearInterval(timer); timer = null; }
  $("console-section").hidden = true;
  $("logout").hidden = true;
  $("login-section").hidden = false;
  $("login-error").textContent = msg || "";
  $("token").focus();
}

function showConsole() {
  $("login-section").hidden = true;
  $("console-section").hidden = false;
  $("logout").hidden = false;
  const viewer = role !== "admin";
  for (const id of ["switchover", "failover", "allow-loss"]) $(id).disabled = viewer;
  $("action-result").textContent = viewer ? "Viewer session: actions need the admin token." : "";
  poll();
  timer = setInterval(poll, 1000);
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await call("POST", "login", { token: $("token").value });
    csrf = r.csrf; role = r.role;
    $("token").value = "";
    showConsole();
  } catch (e) {
    $("login-error").textContent = "Login refused: " + e.message;
    $("token").focus();
  }
});

$("logout").addEventListener("click", async () => {
  try { await call("POST", "logout"); } catch (_) { /* gone anyway */ }
  csrf = ""; role = "";
  showLogin("Logged out.");
});

let polling = false;
async function poll() {
  if (polling) return;
  polling = true;
  try {
    await pollOnce();
  } finally {
    polling = false;
  }
}

// pollOnce asks this page's node first, every time; when it does not
// answer, the other node, with the session it opened for this page.
async function pollOnce() {
  let err = null;
  try {
    const s = await call("GET", "api/status", null, null);
    csrf = s.csrf; role = s.session_role;
    if (s.peer_ticket) ticket = s.peer_ticket;
    via = null;
    last = s; lastOK = new Date();
    render(s, null);
    return;
  } catch (e) {
    if (e.status === 401) { showLogin(e.message); return; }
    err = e;
  }
  if (ticket) {
    try {
      const s = await call("GET", "api/status", null, ticket);
      via = ticket;
      last = s; lastOK = new Date();
      render(s, null, err);
      return;
    } catch (e2) {
      err = new Error(err.message + "; the other node: " + e2.message);
    }
  }
  render(last, err);
}

function fmtBytes(n) {
  if (n == null) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = n;
  while (Math.abs(v) >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i ? v.toFixed(1) : v) + " " + u[i];
}

function render(s, err, homeErr) {
  if (err) {
    $("answered").textContent = "The node did not answer (" + err.message + ")" +
      (lastOK ? "; showing what it said at " + lastOK.toLocaleTimeString() : "");
    $("answered").className = "error";
    if (!s) return;
  } else {
    const other = s.nodes[1];
    const peerVia = !other ? "" : other.reachable ? "; " + other.name + " seen by the " + other.via
      : "; " + other.name + " does not answer " + s.answered_by;
    $("answered").textContent = "Answered by " + s.answered_by + " at " + new Date(s.at).toLocaleTimeString() + peerVia +
      (homeErr ? " — the node that served this page (" + location.host + ") does not answer: " + homeErr.message : "");
    $("answered").className = homeErr ? "warning" : "";
  }
  const self = s.nodes[0].view;
  // The primary's copy of the record is the newest; a secondary's lags.
  const withRec = s.nodes.filter((n) => n.view && n.view.record);
  const rec = (withRec.find((n) => n.view.node.role === "primary") || withRec[0] || {}).view;
  const r = rec ? rec.record : null;
  $("cluster-name").textContent = self.node.cluster ? "— cluster " + self.node.cluster : "";
  const sum = $("summary");
  sum.replaceChildren();
  if (r) {
    sum.append(el("p", {},
      "Term " + r.term + " · mode " + (self.node.failover || "manual") + " · replication " + r.replication + " · ",
      el("strong", { class: r.synchronized ? "" : "warning" }, r.synchronized ? "synchronized" : "NOT synchronized"),
      " (since the record's change at " + new Date(r.updated_at).toLocaleString() + ")"));
  }
  if (self.node.quorum) {
    const q = self.node.quorum;
    sum.append(el("p", {}, "Quorum: " + (q.reachable ? "reachable" : "NOT reachable") + ", " +
      (q.members || []).map((m) => m.name + (m.healthy ? " up" : " down")).join(", ")));
  }
  const nodes = $("nodes");
  // By name, so that a card stays in its place whoever answers.
  const sorted = [...s.nodes].sort((x, y) => x.name.localeCompare(y.name));
  nodes.replaceChildren(...sorted.map(nodeCard));
  renderOperation(s.nodes);
  renderEvents(s.events || []);
  renderPlots(s.history || []);
}

function nodeCard(n) {
  const v = n.view;
  const role = v ? v.node.role : "unknown";
  const card = el("article", { class: "node " + (n.reachable ? role : "down"), "aria-label": "node " + n.name, "data-node": n.name, "data-role": n.reachable ? role : "down" });
  card.append(el("h3", {}, n.name + " ", el("span", { class: "role" }, n.reachable ? role : "unreachable")));
  const dl = el("dl");
  const row = (k, val) => dl.append(el("dt", {}, k), el("dd", {}, val == null || val === "" ? "–" : val));
  row("Reachable", n.reachable ? "yes (" + n.via + ")" : "no: " + (n.error || "no answer"));
  row("Address", n.address);
  if (v) {
    const pg = v.node.postgres;
    row("PostgreSQL", pg.state + (pg.in_recovery ? ", in recovery" : "") + (pg.version ? " (" + pg.version + ")" : ""));
    row("LSN", pg.lsn);
    const rep = v.replication;
    if (rep) {
      if (role === "primary") {
        row("Secondary", rep.state + (rep.sync_state ? " (" + rep.sync_state + ")" : ""));
        row("Sent / replayed", (rep.sent_lsn || "–") + " / " + (rep.replay_lsn || "–"));
        row("Lag", fmtBytes(rep.lag_bytes) + ", " + (rep.lag_seconds || 0).toFixed(1) + " s");
        row("WAL kept", fmtBytes(rep.wal_retained_bytes) + (rep.slot_wal_status ? " (" + rep.slot_wal_status + ")" : ""));
      } else {
        row("Receiver", rep.receiver_status || rep.state);
        row("Received", rep.received_lsn);
        row("Lag", fmtBytes(rep.lag_bytes) + ", " + (rep.lag_seconds || 0).toFixed(1) + " s");
      }
    }
    row("Cluster IP", (v.cluster_ip.address || "–") + (v.cluster_ip.held ? " — held here" : " — not here"));
    row("Term", v.node.term);
    row("tandemd", v.node.tandemd_version);
  }
  card.append(dl);
  return card;
}

function renderOperation(nodes) {
  const box = $("operation");
  box.replaceChildren();
  for (const n of nodes) {
    const v = n.view;
    if (!v) continue;
    const op = v.node.operation_running;
    if (!op && !v.node.progress) continue;
    box.append(el("h2", {}, "Operation in flight on " + n.name));
    if (op) {
      box.append(el("p", {}, op.kind + " (by " + op.by + "), step " + (op.step || "–") + ", since " + new Date(op.started_at).toLocaleTimeString()));
      if (op.steps) box.append(el("ol", {}, ...op.steps.map((st) => el("li", {}, st.name + " " + st.ms.toFixed(1) + " ms"))));
    }
    const p = v.node.progress;
    if (p) {
      const label = p.phase + ": " + fmtBytes(p.done_bytes) + (p.total_bytes ? " of " + fmtBytes(p.total_bytes) : "");
      const bar = el("progress", { max: String(p.total_bytes || 1), value: String(p.total_bytes ? p.done_bytes : 0), "aria-label": label });
      box.append(el("p", {}, label, " ", bar));
    }
  }
}

function renderEvents(events) {
  const tb = $("events").tBodies[0];
  tb.replaceChildren(...events.map((e) => el("tr", {},
    el("td", {}, new Date(e.at).toLocaleString()), el("td", {}, e.node || ""), el("td", {}, e.kind), el("td", {}, e.message))));
}

// A plain SVG line plot of one series.
function plot(title, samples, pick, fmt) {
  const W = 480, H = 120, P = 30;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H);
  svg.setAttribute("role", "img");
  const vals = samples.map(pick);
  const max = Math.max(1, ...vals);
  const t0 = Date.now() - 3600 * 1000;
  const x = (s) => P + (W - P - 5) * Math.max(0, (new Date(s.at) - t0) / 3600000);
  const y = (v) => H - 15 - (H - 30) * v / max;
  const lastV = vals.length ? fmt(vals[vals.length - 1]) : "no samples yet";
  svg.setAttribute("aria-label", title + ": now " + lastV + ", at most " + fmt(max) + " over the last hour");
  const t = document.createElementNS(ns, "text");
  t.setAttribute("x", P); t.setAttribute("y", 12);
  t.textContent = title + " (max " + fmt(max) + ", now " + lastV + ")";
  svg.append(t);
  if (samples.length > 1) {
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("fill", "none"); pl.setAttribute("stroke", "#1a5fb4"); pl.setAttribute("stroke-width", "2");
    pl.setAttribute("points", samples.map((s, i) => x(s).toFixed(1) + "," + y(vals[i]).toFixed(1)).join(" "));
    svg.append(pl);
  }
  return svg;
}

function renderPlots(h) {
  $("plots").replaceChildren(
    plot("Replication lag", h, (s) => s.lag_bytes, fmtBytes),
    plot("Primary commit rate", h, (s) => s.commits_per_second, (v) => v.toFixed(1) + "/s"),
    plot("Primary WAL write rate", h, (s) => s.wal_bytes_per_second, (v) => fmtBytes(Math.round(v)) + "/s"));
}

// The confirmation: the plan the node made, its warnings, or its refusal.
let pending = null;
async function askPlan(op) {
  const body = { op, allow_data_loss: op === "switchover" && $("allow-loss").checked };
  $("action-result").textContent = "Checking…";
  let p;
  try {
    p = await call("POST", "api/plan", body);
  } catch (e) {
    $("action-result").textContent = op + ": " + e.message;
    return;
  }
  $("action-result").textContent = "";
  $("confirm-title").textContent = op === "switchover" ? "Switchover" : "Failover";
  $("confirm-lines").replaceChildren(...(p.lines || []).map((l) => el("li", {}, l)));
  $("confirm-warnings").replaceChildren(...(p.warnings || []).map((l) => el("li", {}, "WARNING: " + l)));
  $("confirm-refused").textContent = p.refused ? "Refused: " + p.refused : "";
  $("confirm-question").textContent = p.question || "";
  $("confirm-yes").hidden = !!p.refused;
  $("confirm-no").textContent = p.refused ? "Close" : "Cancel";
  pending = p.refused ? null : body;
  $("confirm").showModal();
  (p.refused ? $("confirm-no") : $("confirm-no")).focus();
}

$("switchover").addEventListener("click", () => askPlan("switchover"));
$("failover").addEventListener("click", () => askPlan("failover"));
$("confirm-no").addEventListener("click", () => { pending = null; $("confirm").close(); });
$("confirm-yes").addEventListener("click", async () => {
  const body = pending; pending = null;
  $("confirm").close();
  if (!body) return;
  $("action-result").textContent = body.op + " running…";
  try {
    const r = await call("POST", "api/run", Object.assign({}, body, { confirm: true }));
    const res = r.switchover || r.failover;
    $("action-result").textContent = body.op + " done in " + res.took + " (term " + res.term + ").";
  } catch (e) {
    $("action-result").textContent = body.op + " failed: " + e.message;
  }
  poll();
});

// A page opened with a live session goes straight to the console.
(async () => {
  try {
    const s = await call("GET", "api/status");
    csrf = s.csrf; role = s.session_role;
    showConsole();
  } catch (_) {
    showLogin("");
  }
})();
