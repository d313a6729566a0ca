// MBT web console: the same /api/mbt routes and passkey ceremonies the CLI uses, from the
// browser (WebAuthn through navigator.credentials; the session rides in the HttpOnly cookie),
// updated live from the browser stream (/api/mbt/stream/trade-updates, Server-Sent Events).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { symbol: "IBM", stream: null, refreshTimer: null, charts: {} };

// ---- HTTP ---------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v != null) url.searchParams.set(k, v);
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(url, init);
  const text = await r.text();
  let doc = {};
  try { doc = text ? JSON.parse(text) : {}; } catch (e) { doc = {}; }
  if (!r.ok) {
    const err = doc.error || {};
    throw new ApiError(r.status, err.code || String(r.status), err.message || r.statusText);
  }
  return doc.data;
}

function say(msg, bad) {
  const s = $("status");
  s.textContent = msg || "";
  s.className = bad ? "error" : "";
}

// ---- formatting ----------------------------------------------------------------------------
const moneyFmt = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
function money(v, signed) {
  if (v === "" || v == null) return "";
  const n = Number(v);
  const s = moneyFmt.format(n);
  return signed && n > 0 ? "+" + s : s;
}
function price(v) {
  if (v === "" || v == null) return "";
  const n = Number(v);
  const decimals = Math.max(2, Math.min(6, (String(v).split(".")[1] || "").replace(/0+$/, "").length));
  return n.toFixed(decimals);
}
const etFmt = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York", year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
function et(ts) {
  if (!ts) return "";
  const p = Object.fromEntries(etFmt.formatToParts(new Date(ts)).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ET`;
}

function table(el, headers, rows) {
  el.replaceChildren();
  if (!rows.length) {
    const cap = document.createElement("caption");
    cap.textContent = "none";
    el.append(cap);
    return;
  }
  const thead = el.createTHead().insertRow();
  for (const h of headers) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = h;
    thead.append(th);
  }
  const tbody = el.createTBody();
  for (const r of rows) {
    const tr = tbody.insertRow();
    for (const cell of r) {
      const td = tr.insertCell();
      if (cell instanceof Node) td.append(cell); else td.textContent = cell == null ? "" : String(cell);
    }
  }
}

function button(label, onClick, cls) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (cls) b.className = cls;
  b.addEventListener("click", onClick);
  return b;
}

// ---- WebAuthn ------------------------------------------------------------------------------
function b64urlToBuf(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0)).buffer;
}
function bufToB64url(buf) {
  let s = "";
  for (const x of new Uint8Array(buf)) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(json) {
  const o = JSON.parse(json);
  if (PublicKeyCredential.parseCreationOptionsFromJSON) return PublicKeyCredential.parseCreationOptionsFromJSON(o);
  o.challenge = b64urlToBuf(o.challenge);
  o.user.id = b64urlToBuf(o.user.id);
  for (const c of o.excludeCredentials || []) c.id = b64urlToBuf(c.id);
  return o;
}
function requestOptions(json) {
  const o = JSON.parse(json);
  if (PublicKeyCredential.parseRequestOptionsFromJSON) return PublicKeyCredential.parseRequestOptionsFromJSON(o);
  o.challenge = b64urlToBuf(o.challenge);
  for (const c of o.allowCredentials || []) c.id = b64urlToBuf(c.id);
  return o;
}
function credentialJSON(cred) {
  if (cred.toJSON) return JSON.stringify(cred.toJSON());
  const r = cred.response;
  const response = { clientDataJSON: bufToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bufToB64url(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = bufToB64url(r.authenticatorData);
    response.signature = bufToB64url(r.signature);
    if (r.userHandle) response.userHandle = bufToB64url(r.userHandle);
  }
  return JSON.stringify({ id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type, response, clientExtensionResults: {} });
}

async function signup(email) {
  const c = await api("POST", "/api/mbt/sessions/registrations", { email });
  const cred = await navigator.credentials.create({ publicKey: creationOptions(c.options_json) });
  await api("POST", `/api/mbt/sessions/registrations/${c.ceremony_id}:finish`, { credential_json: credentialJSON(cred) });
}

async function login(email) {
  const c = await api("POST", "/api/mbt/sessions/logins", { email });
  const cred = await navigator.credentials.get({ publicKey: requestOptions(c.options_json) });
  await api("POST", `/api/mbt/sessions/logins/${c.ceremony_id}:finish`, { credential_json: credentialJSON(cred) });
}

async function stepUp(bind) {
  const c = await api("POST", "/api/mbt/sessions/step-ups", { bind_sha256: bind || "" });
  const cred = await navigator.credentials.get({ publicKey: requestOptions(c.options_json) });
  const g = await api("POST", `/api/mbt/sessions/step-ups/${c.ceremony_id}:finish`, { credential_json: credentialJSON(cred) });
  return g.step_up_id;
}

// ---- views ---------------------------------------------------------------------------------
async function showAccount() {
  const a = await api("GET", "/api/mbt/account");
  let dayPl = "";
  try {
    const h = await api("GET", "/api/mbt/account/history");
    const last = (h.points || []).slice(-1)[0];
    if (last) dayPl = money(Number(a.equity) - Number(last.equity), true);
  } catch (e) { /* before the first close there is no snapshot */ }
  const figures = [
    ["Cash", money(a.cash)],
    ["Buying power", money(a.buying_power)],
    ["Held for orders", money(a.held_for_orders)],
    ["Equity", money(a.equity)],
    ["Day P&L", dayPl || "n/a before the first close"],
    ["Long market value", money(a.long_market_value)],
    ["Profile / tier", `${a.profile} / ${a.tier}`],
  ];
  if (a.account_type === "margin") {
    figures.push(["Initial margin", money(a.initial_margin)], ["Maintenance margin", money(a.maintenance_margin)]);
  }
  const dl = $("account");
  dl.replaceChildren();
  for (const [k, v] of figures) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
}

async function showPositions() {
  const d = await api("GET", "/api/mbt/positions");
  table($("positions"), ["Symbol", "Qty", "Avg entry", "Price", "Market value", "Unrealized", "Realized"],
    d.positions.map((p) => [p.symbol, p.qty, price(p.avg_entry_price), price(p.current_price),
      money(p.market_value), money(p.unrealized_pl, true), money(p.realized_pl, true)]));
}

async function showOrders() {
  const d = await api("GET", "/api/mbt/orders", undefined, { status: "open" });
  table($("orders"), ["Id", "Side", "Qty", "Symbol", "Type", "Price", "TIF", "Status", "Filled", ""],
    d.orders.map((o) => {
      const cell = document.createElement("span");
      cell.append(button("Cancel", () => cancel(o.id), "secondary"));
      if (o.order_type !== "market" && !(o.legs || []).length) cell.append(button("Replace", () => replace(o), "secondary"));
      const what = (o.legs || []).length ? o.legs.map((l) => `${l.side} ${l.ratio}x ${l.symbol}`).join(" / ") : o.symbol;
      return [o.id.slice(0, 8), o.side, o.qty, what, o.order_type, price(o.limit_price || o.stop_price) || "mkt",
        o.time_in_force, o.status, o.filled_qty, cell];
    }));
}

async function showFills() {
  const d = await api("GET", "/api/mbt/fills");
  table($("fills"), ["Market time", "Side", "Qty", "Symbol", "Price", "Bid / ask", "Why"],
    d.fills.map((f) => [et(f.filled_at), f.side, f.qty, f.symbol, price(f.price),
      `${price(f.quote.bid)} / ${price(f.quote.ask)}`, f.explanation]));
}

async function showActivities() {
  const d = await api("GET", "/api/mbt/activities", undefined, { page_size: "50" });
  table($("activities"), ["When", "Type", "Symbol", "Qty", "Price", "Amount", "Description"],
    d.activities.map((a) => [et(a.occurred_at), a.activity_type, a.symbol, a.qty, price(a.price),
      money(a.amount, true), a.description]));
}

function drawChart(key, el, xs, ys, label) {
  if (state.charts[key]) { state.charts[key].destroy(); delete state.charts[key]; }
  el.replaceChildren();
  if (!xs.length) { el.textContent = "no data yet"; return; }
  const width = Math.max(320, el.clientWidth || 640);
  const lo = Math.min(...ys), hi = Math.max(...ys);
  const pad = Math.max((hi - lo) * 0.1, Math.abs(hi) * 0.0005, 0.01);
  state.charts[key] = new uPlot({
    width, height: 220, title: label,
    // market time: the axis reads New York time, as every other time on the page
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), "America/New_York"),
    scales: { y: { range: () => [lo - pad, hi + pad] } },
    series: [{ label: "ET" }, { label, stroke: "#1c6dd0", width: 2, value: (u, v) => (v == null ? "" : v.toFixed(2)) }],
    axes: [{}, { size: 80 }],
  }, [xs, ys], el);
}

async function showEquity() {
  const frame = $("eq-frame").value;
  const h = await api("GET", "/api/mbt/account/history", undefined, frame === "1D" ? {} : { timeframe: frame });
  const pts = h.points || [];
  const xs = pts.map((p) => (p.timestamp ? Date.parse(p.timestamp) : Date.parse(p.date + "T21:00:00Z")) / 1000);
  drawChart("equity", $("equity-chart"), xs, pts.map((p) => Number(p.equity)), "Equity (USD)");
  $("equity-note").textContent = pts.length ? `${pts.length} points, last ${money(pts[pts.length - 1].equity)}` : "";
}

async function showQuote() {
  const sym = $("t-symbol").value.trim().toUpperCase();
  if (!sym) return;
  state.symbol = sym;
  try {
    const q = await api("GET", `/api/mbt/quotes/${encodeURIComponent(sym)}`);
    const me = await api("GET", "/api/mbt/sessions/current");
    const delay = me.tier === "free" ? " · 15 min delayed (Free)" : "";
    $("quote").textContent = `${sym}  bid ${price(q.bid)} × ${q.bid_size}   ask ${price(q.ask)} × ${q.ask_size}   at ${et(q.timestamp)}${delay}`;
    await showQuoteChart(sym, q.timestamp);
  } catch (e) {
    $("quote").textContent = `${sym}: ${e.message}`;
  }
}

async function showQuoteChart(sym, at) {
  $("qc-symbol").textContent = sym;
  const end = new Date(at);
  const start = new Date(end.getTime() - 2 * 3600 * 1000);
  try {
    const d = await api("GET", `/api/mbt/bars/${encodeURIComponent(sym)}`, undefined,
      { start_time: start.toISOString(), end_time: end.toISOString(), timeframe: "1Min" });
    const bars = d.bars || [];
    drawChart("quote", $("quote-chart"), bars.map((b) => Date.parse(b.start) / 1000), bars.map((b) => Number(b.close)), `${sym} mid (1 min)`);
  } catch (e) {
    $("quote-chart").textContent = e.message;
  }
}

async function showSecurity() {
  const s = await api("GET", "/api/mbt/sessions");
  table($("sessions"), ["Session", "Started", "Expires", ""], s.sessions.map((x) => [
    x.session_id.slice(0, 8) + (x.current ? " (this one)" : ""), et(x.created_at), et(x.expires_at),
    x.current ? "" : button("Revoke", async () => { await api("DELETE", `/api/mbt/sessions/${x.session_id}`); showSecurity(); }, "secondary"),
  ]));
  const k = await api("GET", "/api/mbt/keys");
  table($("keys"), ["Key id", "Name", "Scopes", "Mode", "State", ""], (k.keys || []).map((x) => [
    x.key_id, x.name, (x.scopes || []).join(","), x.read_only ? "read-only" : "read-write",
    x.revoked_at ? "revoked" : "active",
    x.revoked_at ? "" : button("Revoke", async () => { await api("DELETE", `/api/mbt/keys/${x.key_id}`); showSecurity(); }, "secondary"),
  ]));
  try {
    const h = await api("GET", "/api/mbt/handoff");
    const p = $("handoff");
    p.textContent = h.eligible ? (h.enrolled ? `connected to Alpaca ${h.account_number} ` : `${h.reason} `) : h.reason;
    if (h.eligible && !h.enrolled) {
      p.append(button("Connect Alpaca (confirm with passkey)", async () => {
        try {
          const start = await api("POST", "/api/mbt/handoff/connect", { step_up_id: await stepUp("") });
          location.assign(start.authorize_url);  // Alpaca asks you, then sends you back here
        } catch (e) { say(e.message, true); }
      }));
    }
    if (h.enrolled) {
      p.append(button("Disconnect", async () => { await api("DELETE", "/api/mbt/handoff"); showSecurity(); }, "danger"));
    }
    $("live-form").hidden = !(h.eligible && h.enrolled);
    if (h.enrolled) showLiveOrders();
  } catch (e) { $("handoff").textContent = e.message; }
}

async function refresh() {
  try {
    await Promise.all([showAccount(), showPositions(), showOrders(), showFills(), showActivities()]);
  } catch (e) {
    if (e.status === 401) return signedOut();
    say(e.message, true);
  }
}

// ---- actions -------------------------------------------------------------------------------
async function cancel(id) {
  try { await api("DELETE", `/api/mbt/orders/${id}`); say("order canceled"); } catch (e) { say(e.message, true); }
  refresh();
}

async function replace(o) {
  const v = prompt(`New limit price for ${o.side} ${o.qty} ${o.symbol}`, o.limit_price || o.stop_price || "");
  if (!v) return;
  const body = o.order_type === "stop" ? { stop_price: v } : { limit_price: v };
  try { await api("PATCH", `/api/mbt/orders/${o.id}`, body); say("order replaced"); } catch (e) { say(e.message, true); }
  refresh();
}

function addLeg() {
  const n = $("legs").children.length;
  if (n >= 4) return;
  const row = document.createElement("div");
  row.className = "row leg";
  row.innerHTML = `<label>Leg ${n + 1} side <select class="leg-side"><option>buy</option><option>sell</option></select></label>
    <label>symbol <input class="leg-symbol" placeholder="GOOG151224C00750000"></label>
    <label>ratio <input class="leg-ratio" inputmode="numeric" value="1" size="2"></label>`;
  $("legs").append(row);
}

async function submitTicket(ev) {
  ev.preventDefault();
  $("ticket-error").textContent = "";
  const f = new FormData($("ticket"));
  const legs = [...document.querySelectorAll(".leg")].map((r) => ({
    side: r.querySelector(".leg-side").value,
    symbol: r.querySelector(".leg-symbol").value.trim().toUpperCase(),
    ratio: Number(r.querySelector(".leg-ratio").value || 1),
  })).filter((l) => l.symbol);
  const body = { qty: f.get("qty"), order_type: f.get("order_type"), time_in_force: f.get("time_in_force") };
  if (legs.length) {
    body.legs = legs;
    if (f.get("fill_preference")) body.fill_preference = f.get("fill_preference");
  } else {
    body.symbol = String(f.get("symbol")).trim().toUpperCase();
    body.side = f.get("side");
  }
  if (f.get("limit_price")) body.limit_price = f.get("limit_price");
  if (f.get("stop_price")) body.stop_price = f.get("stop_price");
  try {
    const o = await api("POST", "/api/mbt/orders", body);
    say(`order ${o.id.slice(0, 8)} ${o.status}`);
    refresh();
  } catch (e) {
    $("ticket-error").textContent = `${e.message} [${e.code}]`;
  }
}

// ---- live orders (handoff): shown exactly as sent, signed by a step-up bound to them -------
async function sha256hex(text) {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function showLiveOrders() {
  const d = await api("GET", "/api/mbt/live/orders");
  table($("live-orders"), ["Id", "Side", "Qty", "Symbol", "Status", "Filled", "Avg", "Note"],
    (d.orders || []).map((o) => [o.live_order_id.slice(0, 8), o.side, o.qty, o.symbol, o.status,
      o.filled_qty, o.filled_avg_price, o.reason]));
}

async function reviewLive(ev) {
  ev.preventDefault();
  $("live-result").textContent = "";
  const body = { symbol: $("l-symbol").value, side: $("l-side").value, qty: $("l-qty").value };
  if ($("l-limit").value) Object.assign(body, { type: "limit", limit_price: $("l-limit").value });
  try {
    const o = await api("POST", "/api/mbt/live/orders", body);
    if (await sha256hex(o.payload_json) !== o.payload_sha256) throw new Error("the digest does not match what is shown: not signing");
    state.live = o;
    $("live-summary").textContent = o.summary;
    $("live-payload").textContent = `${o.payload_json}\nsha256 ${o.payload_sha256}`;
    $("live-review").hidden = false;
  } catch (e) { $("live-result").textContent = e.message; }
}

async function signLive() {
  const o = state.live;
  if (!o) return;
  try {
    // the passkey signs a challenge that carries this order's digest (checked before signing)
    const c = await api("POST", "/api/mbt/sessions/step-ups", { bind_sha256: o.payload_sha256 });
    const challenge = new Uint8Array(b64urlToBuf(JSON.parse(c.options_json).challenge));
    const bound = [...challenge.slice(16)].map((b) => b.toString(16).padStart(2, "0")).join("");
    if (bound !== o.payload_sha256) throw new Error("the challenge is not bound to this order: not signing");
    const cred = await navigator.credentials.get({ publicKey: requestOptions(c.options_json) });
    const g = await api("POST", `/api/mbt/sessions/step-ups/${c.ceremony_id}:finish`, { credential_json: credentialJSON(cred) });
    const sent = await api("POST", `/api/mbt/live/orders/${o.live_order_id}:send`, { step_up_id: g.step_up_id });
    $("live-result").textContent = `live order ${sent.live_order_id.slice(0, 8)} ${sent.status}`;
  } catch (e) { $("live-result").textContent = e.message; }
  $("live-review").hidden = true;
  state.live = null;
  setTimeout(showLiveOrders, 500);
  setTimeout(showLiveOrders, 2000);
}

// ---- the live stream -----------------------------------------------------------------------
const EVENTS = ["new", "accepted", "fill", "partial_fill", "canceled", "expired", "rejected", "replaced", "pending_new", "done_for_day"];
function startStream() {
  if (state.stream) state.stream.close();
  const es = new EventSource("/api/mbt/stream/trade-updates");
  const onUpdate = () => {
    clearTimeout(state.refreshTimer);
    clearTimeout(state.ledgerTimer);
    state.refreshTimer = setTimeout(refresh, 100);  // one refresh for a burst of updates
    // the account's ledger applies a fill a moment after the fill itself: look again then
    state.ledgerTimer = setTimeout(refresh, 1500);
  };
  for (const e of EVENTS) es.addEventListener(e, onUpdate);
  es.onerror = () => { /* EventSource reconnects by itself, resuming from its last id */ };
  state.stream = es;
}

// ---- signed in / out -----------------------------------------------------------------------
function signedOut() {
  if (state.stream) { state.stream.close(); state.stream = null; }
  $("signed-in").hidden = true;
  $("signed-out").hidden = false;
  $("logout").hidden = true;
  $("who").textContent = "";
}

async function signedIn() {
  const me = await api("GET", "/api/mbt/sessions/current");
  $("who").textContent = `${me.email} · ${me.tier}`;
  $("signed-out").hidden = true;
  $("signed-in").hidden = false;
  $("logout").hidden = false;
  startStream();
  await refresh();
  await Promise.all([showEquity(), showQuote(), showSecurity()]);
}

async function boot() {
  $("auth-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await login($("email").value); await signedIn(); say("signed in"); } catch (e) { say(e.message, true); }
  });
  $("signup").addEventListener("click", async () => {
    if (!$("email").reportValidity()) return;
    try { await signup($("email").value); await signedIn(); say("account created: $100,000 of paper money"); } catch (e) { say(e.message, true); }
  });
  $("logout").addEventListener("click", async () => {
    try { await api("DELETE", "/api/sessions/current"); } catch (e) { /* already gone */ }
    signedOut();
    say("signed out");
  });
  $("ticket").addEventListener("submit", submitTicket);
  $("live-form").addEventListener("submit", reviewLive);
  $("live-sign").addEventListener("click", signLive);
  $("live-cancel").addEventListener("click", () => { $("live-review").hidden = true; state.live = null; });
  $("add-leg").addEventListener("click", addLeg);
  $("t-symbol").addEventListener("change", showQuote);
  $("eq-frame").addEventListener("change", () => showEquity().catch((e) => say(e.message, true)));
  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const grant = await stepUp("");
      const k = await api("POST", "/api/mbt/keys", { name: $("key-name").value, read_only: $("key-ro").checked, step_up_id: grant });
      const pre = $("key-secret");
      pre.hidden = false;
      pre.textContent = `APCA-API-KEY-ID:     ${k.key_id}\nAPCA-API-SECRET-KEY: ${k.secret}\nShown this once: MBT keeps only a keyed hash.`;
      showSecurity();
    } catch (e) { say(e.message, true); }
  });
  $("export").addEventListener("click", async () => {
    try {
      const d = await api("GET", "/api/mbt/me/export");
      const bytes = Uint8Array.from(atob(d.archive), (c) => c.charCodeAt(0));
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([bytes], { type: "application/zip" }));
      a.download = "mbt-export.zip";
      a.click();
    } catch (e) { say(e.message, true); }
  });
  $("erase").addEventListener("click", async () => {
    if (!confirm("Erase your account after a 30-day cooling-off? You can cancel until then.")) return;
    try { const s = await api("POST", "/api/mbt/me:erase", {}); say(`erasure scheduled for ${et(s.erase_after || s.scheduled_for)}`); } catch (e) { say(e.message, true); }
  });
  $("erase-cancel").addEventListener("click", async () => {
    try { await api("DELETE", "/api/mbt/me/erasure"); say("erasure canceled"); } catch (e) { say(e.message, true); }
  });
  setInterval(() => { if (!$("signed-in").hidden) { showQuote(); showEquity().catch(() => {}); } }, 15000);
  setInterval(() => { if (!$("signed-in").hidden) refresh(); }, 5000);  // marks move too
  try { await signedIn(); } catch (e) { signedOut(); }
}

document.addEventListener("DOMContentLoaded", boot);
