// The operator console (docs/console.md). Everything it shows or does goes through the
// admin API (/admin), with the session cookie and its CSRF token; nothing here keeps the
// admin key. Pages are drawn with DOM calls (never HTML strings): account ids, labels and
// provider words are other people's text.
"use strict";

const session = { csrf: null, expiresAt: 0, timer: null };
let refreshTimer = null;

// ---- DOM -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  appendAll(el, children);
  return el;
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, value);
  appendAll(el, children);
  return el;
}

// ---- Figures: money is integer micro-USD, shown in USD, exact on hover ---------------

function groupDigits(text) {
  return text.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

function exactUsd(micros) {
  const sign = micros < 0 ? "-" : "";
  const abs = Math.abs(micros);
  const whole = Math.floor(abs / 1e6);
  const frac = String(abs - whole * 1e6).padStart(6, "0");
  return `${sign}$${groupDigits(String(whole))}.${frac}`;
}

function usdText(micros) {
  const sign = micros < 0 ? "-" : "";
  const abs = Math.abs(micros);
  if (abs > 0 && abs < 10000) {  // under a cent: the exact figure, trailing zeros cut
    return sign + "$0." + String(abs).padStart(6, "0").replace(/0+$/, "");
  }
  let whole = Math.floor(abs / 1e6);
  let cents = Math.round((abs - whole * 1e6) / 1e4);
  if (cents === 100) { whole += 1; cents = 0; }
  return `${sign}$${groupDigits(String(whole))}.${String(cents).padStart(2, "0")}`;
}

function money(micros) {
  return h("span", { class: "money", title: `${exactUsd(micros)} (${micros} µUSD)`,
                     "data-micros": String(micros) }, usdText(micros));
}

// "12.50", "$12.5", "0.000001": a positive amount in USD, exact to the micro-USD.
function parseUsd(text) {
  let t = text.trim().replace(/^\$/, "");
  if (t === "") throw new Error("Enter an amount in USD, for example 5 or 12.50.");
  if (t.includes(",")) {  // only as thousands separators: "1,5" is not $15
    if (!/^-?\d{1,3}(,\d{3})+(\.\d*)?$/.test(t)) {
      throw new Error(`“${text.trim()}”: use a point for cents (12.50); commas only between thousands.`);
    }
    t = t.replace(/,/g, "");
  }
  if (t.startsWith("-")) {
    throw new Error("Enter a positive amount: choose “Remove credits” to take credits away.");
  }
  const m = /^(\d{1,9})(?:\.(\d*))?$/.exec(t);
  if (!m) throw new Error(`“${text.trim()}” is not an amount in USD (for example 5 or 12.50).`);
  const frac = m[2] || "";
  if (frac.length > 6) {
    throw new Error("Amounts are exact to the micro-USD: at most 6 digits after the point.");
  }
  const micros = Number(m[1]) * 1e6 + Number(frac.padEnd(6, "0"));
  if (micros === 0) throw new Error("The amount must be more than zero.");
  return micros;
}

function count(n) { return groupDigits(String(n)); }

// Times: the browser's zone, UTC on hover. `at`: unix seconds or an ISO string.
function toDate(at) { return typeof at === "number" ? new Date(at * 1000) : new Date(at); }
function when(at) {
  if (at === null || at === undefined || at === "") return h("span", { class: "muted" }, "—");
  const d = toDate(at);
  return h("time", { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString());
}
function shortTime(d) {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// ---- The admin API ------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, code) { super(message); this.status = status; this.code = code; }
}

// One admin call. A 403 `csrf_mismatch` means this tab's token is another sign-in's (the
// operator signed in again in another tab): the token is fetched anew and the call made
// once more.
async function call(method, path, body, retried) {
  try {
    return await callOnce(method, path, body);
  } catch (err) {
    if (err.code !== "csrf_mismatch" || retried) throw err;
    const current = await callOnce("GET", "/console/session");
    session.csrf = current.csrf;
    armExpiry(current);
    return call(method, path, body, true);
  }
}

async function callOnce(method, path, body) {
  const headers = { "x-aura-csrf": session.csrf || "" };
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store",
                                   body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, "The router did not answer. Check that it is running, then try again.");
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (err) { data = null; }
  if (response.ok) return data;
  const error = (data && data.error) || {};
  const message = error.message || `The router answered ${response.status}.`;
  if (response.status === 401 && path.startsWith("/admin")) {
    showSignIn("Your session has expired or was ended. Sign in again with the admin key.");
  }
  throw new ApiError(response.status, message, error.code);
}

const enc = encodeURIComponent;

// ---- Session --------------------------------------------------------------------------

// The expiry, by the router's clock (`expires_in_s`), not this browser's.
function armExpiry(answer) {
  session.expiresAt = Date.now() + answer.expires_in_s * 1000;
  clearTimeout(session.timer);
  const tick = () => {
    const left = session.expiresAt - Date.now();
    if (left <= 0) showSignIn("Your session has expired. Sign in again with the admin key.");
    else session.timer = setTimeout(tick, Math.min(left, 2 ** 31 - 1));  // setTimeout's cap
  };
  tick();
  const until = new Date(session.expiresAt);
  document.getElementById("session-info").textContent = `Signed in until ${
    answer.expires_in_s > 86400 ? until.toLocaleString() : shortTime(until)}`;
}

function startSession(answer) {
  session.csrf = answer.csrf;
  armExpiry(answer);
  document.getElementById("signin").hidden = true;
  document.getElementById("app").hidden = false;
  route();
}

function showSignIn(message) {
  session.csrf = null;
  clearTimeout(session.timer);
  clearInterval(refreshTimer);
  routeSerial++;  // a page still loading is not drawn
  main().replaceChildren();
  const open = document.getElementById("dialog");
  if (open.open) open.close();
  document.getElementById("app").hidden = true;
  document.getElementById("signin").hidden = false;
  const error = document.getElementById("signin-error");
  error.hidden = !message;
  error.textContent = message || "";
  const input = document.getElementById("admin-key");
  input.value = "";
  input.focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("admin-key");
  const error = document.getElementById("signin-error");
  error.hidden = true;
  try {
    const answer = await call("POST", "/console/session", { admin_key: input.value });
    input.value = "";
    startSession(answer);
  } catch (err) {
    error.textContent = err.status === 401
      ? "That is not the admin key. Check ADMIN_API_KEY in the router's environment."
      : err.message;
    error.hidden = false;
    input.select();
  }
}

async function signOut() {
  try { await call("DELETE", "/console/session"); } catch (err) { /* signed out anyway */ }
  showSignIn("Signed out.");
}

// ---- Page scaffolding -------------------------------------------------------------------

const main = () => document.getElementById("main");

function notice(kind, ...text) {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, ...text);
}

function errorPanel(err, retry) {
  const what = err.status === 503 ? "Nothing was changed." : "";
  return h("div", { class: "notice error", role: "alert" },
    h("strong", {}, "Could not load this page. "), err.message, what ? " " + what : "",
    retry ? h("button", { type: "button", class: "quiet", onclick: retry }, "Try again") : null);
}

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x, i) => h("th", {  // figures align right
      scope: "col", class: rows[0].children[i] && rows[0].children[i].classList.contains("num") ? "num" : null }, x)))),
    h("tbody", {}, rows)));
}

function badge(kind, text) { return h("span", { class: `badge ${kind}` }, text); }

function statCard(label, value, hint) {
  return h("div", { class: "stat card" }, h("div", { class: "stat-label" }, label),
           h("div", { class: "stat-value" }, value), hint ? h("div", { class: "muted small" }, hint) : null);
}

function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
           hint ? h("div", { class: "muted small" }, hint) : null);
}

// A form whose submit runs `action(form)`; its errors and results are said under it.
function actionForm(attrs, children, action) {
  const status = h("p", { class: "form-status", role: "status", "aria-live": "polite" });
  const form = h("form", { ...attrs, novalidate: true }, children, status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    status.className = "form-status";
    status.textContent = "";
    if (button) button.disabled = true;
    try {
      const said = await action(form);
      if (said) { status.className = "form-status ok"; status.textContent = said; }
    } catch (err) {
      status.className = "form-status form-error";
      status.setAttribute("role", "alert");
      status.textContent = err.status === 503
        ? `${err.message} Nothing was changed: try again once it is back.` : err.message;
    } finally {
      if (button) button.disabled = false;
    }
  });
  return form;
}

function dialog(title, content, buttons) {
  const d = document.getElementById("dialog");
  document.getElementById("dialog-title").textContent = title;
  document.getElementById("dialog-content").replaceChildren(...[content].flat());
  const actions = document.getElementById("dialog-actions");
  actions.replaceChildren(...buttons.map(([label, value, cls]) =>
    h("button", { value, class: cls || "" }, label)));
  return new Promise((resolve) => {
    d.addEventListener("close", () => {
      document.getElementById("dialog-content").replaceChildren();  // a new key goes with it
      resolve(d.returnValue);
    }, { once: true });
    d.returnValue = "";
    d.showModal();
  });
}

async function confirmDialog(title, text, action) {
  return (await dialog(title, h("p", {}, text), [["Cancel", "cancel"], [action, "ok", "danger"]])) === "ok";
}

function pageHead(title, ...extra) {
  document.title = `${title} · Aura Router console`;
  return h("div", { class: "page-head" }, h("h1", {}, title), h("div", { class: "page-tools" }, ...extra));
}

function refreshButton() {
  return h("button", { type: "button", class: "quiet", onclick: () => route() }, "Refresh");
}

// ---- Charts -------------------------------------------------------------------------------

// Bars per bucket; `series` stack ([key, label, class]); each bar says its figures on hover.
// 1, 2, 5 × 10^k: the smallest at or above `v` (a chart's top line).
function niceCeil(v) {
  const power = 10 ** Math.floor(Math.log10(Math.max(v, 1)));
  for (const step of [1, 2, 5, 10]) if (step * power >= v) return step * power;
  return 10 * power;
}

// Bars per bucket; `series` stack ([key, label, class]); each bar says its figures on hover.
function barChart(title, buckets, series, format, bucketLabel) {
  const width = 640, height = 190, left = 84, bottom = 24, top = 10;
  const totals = buckets.map((b) => series.reduce((sum, [key]) => sum + b[key], 0));
  const max = niceCeil(Math.max(1, ...totals));
  const step = (width - left) / buckets.length;
  const bar = Math.max(step * 0.7, 2);
  const y = (v) => top + (height - top - bottom) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
                          "aria-label": title });
  for (const v of max % 2 === 0 ? [0, max / 2, max] : [0, max]) {
    svg.append(s("line", { x1: left, x2: width, y1: y(v), y2: y(v), class: "grid" }),
               s("text", { x: left - 8, y: y(v) + 4, class: "axis", "text-anchor": "end" },
                 format(v, true)));
  }
  buckets.forEach((b, i) => {
    const x = left + i * step + (step - bar) / 2;
    let base = 0;
    const parts = series.map(([key, label]) => `${label}: ${format(b[key])}`).join(", ");
    const group = s("g", { class: "bar" }, s("title", {}, `${bucketLabel(b)} — ${parts}`));
    group.append(s("rect", { x: left + i * step, width: step, y: top, height: height - top - bottom,
                             class: "hover" }));
    for (const [key, , cls] of series) {
      const v = b[key];
      if (v > 0) {
        group.append(s("rect", { x, width: bar, y: y(base + v), height: y(base) - y(base + v),
                                 class: cls }));
      }
      base += v;
    }
    svg.append(group);
    if (i % Math.ceil(buckets.length / 6) === 0) {
      svg.append(s("text", { x: x + bar / 2, y: height - 6, class: "axis", "text-anchor": "middle" },
                   bucketLabel(b)));
    }
  });
  const legend = h("div", { class: "legend" }, series.map(([, label, cls]) =>
    h("span", {}, h("span", { class: `swatch ${cls}` }), label)));
  return h("figure", { class: "card chart-card", "data-chart": title }, h("figcaption", {}, title), svg, legend);
}

// ---- Pages ----------------------------------------------------------------------------------

const pages = {};
let overviewWindow = "hour";

pages.overview = async () => {
  const [activity, providers] = await Promise.all([
    call("GET", `/admin/activity?window=${overviewWindow}`), call("GET", "/admin/providers")]);
  withOk(activity);
  const t = activity.totals;
  const toggle = ["hour", "day"].map((w) => h("button", {
    type: "button", class: "quiet", "aria-pressed": String(w === overviewWindow),
    onclick: () => { overviewWindow = w; route(); } }, w === "hour" ? "Last hour" : "Last day"));
  const label = (b) => overviewWindow === "hour" ? shortTime(new Date(b.start))
    : new Date(b.start).toLocaleTimeString([], { hour: "2-digit" });
  const down = providers.data.filter((p) => !p.usable);
  return [
    pageHead("Overview", h("div", { class: "toggle", role: "group", "aria-label": "Window" }, toggle),
             refreshButton()),
    activity.calls_scope === "process" ? notice("info",
      "Calls and errors are this worker's own (WORKERS > 1); spend and billed calls are every worker's.") : null,
    h("div", { class: "stats" },
      statCard("Calls", count(t.calls), `${count(t.billed)} billed`),
      statCard("Errors", count(t.client_errors + t.server_errors),
               `${count(t.client_errors)} refused (4xx) · ${count(t.server_errors)} failed (5xx)`),
      statCard("Spend", money(t.cost_micros), `${count(t.input_tokens)} in · ${count(t.output_tokens)} out tokens`),
      statCard("Providers", down.length ? `${down.length} down` : "all up",
               `${providers.data.length} configured`)),
    h("div", { class: "charts" },
      barChart("Calls and errors", activity.buckets,
               [["ok_calls", "Answered", "s-ok"], ["client_errors", "Refused (4xx)", "s-warn"],
                ["server_errors", "Failed (5xx)", "s-bad"]],
               (v) => count(v), label),
      barChart("Spend", activity.buckets, [["cost_micros", "Spend", "s-money"]],
               (v, axis) => axis ? usdText(v) : `${usdText(v)} (${v} µUSD)`, label)),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Spend by model"),
        table(["Model", "Billed calls", "Spend"], activity.by_model.map((m) =>
          h("tr", {}, h("td", {}, m.model), h("td", { class: "num" }, count(m.billed)),
            h("td", { class: "num" }, money(m.cost_micros)))),
          "No billed calls in this window.")),
      h("section", { class: "card" }, h("h2", {}, "Providers"),
        table(["Provider", "Health", "Breaker"], providers.data.map((p) =>
          h("tr", {}, h("td", {}, h("a", { href: `#/providers/${enc(p.name)}` }, p.name)),
            h("td", {}, health(p)), h("td", {}, breakerBadge(p.breaker)))),
          "No providers configured: add one on the Providers page."))),
  ];
};

// Answered calls: the calls once the errors are taken out (the chart stacks the three).
function withOk(activity) {
  for (const b of activity.buckets) b.ok_calls = Math.max(b.calls - b.client_errors - b.server_errors, 0);
  return activity;
}

function health(p) {
  if (!p.running) return badge("bad", "not running");
  if (!p.usable) {
    const reason = p.probe && p.probe.reason ? `: ${p.probe.reason.replace(/_/g, " ")}` : "";
    return badge("bad", `down${reason}`);
  }
  if (p.probe && p.probe.state === "pending") return badge("muted", "checking");
  return badge("ok", "up");
}

function breakerBadge(b) {
  const kind = b.state === "closed" ? "ok" : b.state === "open" ? "bad" : "warn";
  const extra = b.state === "open" && b.retry_in_s !== undefined ? ` · retry in ${b.retry_in_s} s` : "";
  return badge(kind, `${b.state.replace("_", "-")}${extra}`);
}

// Accounts -----------------------------------------------------------------------------

pages.accounts = async (params) => {
  const prefix = params.get("prefix") || "";
  const after = params.get("after") || "";
  const query = new URLSearchParams({ limit: "50" });
  if (prefix) query.set("prefix", prefix);
  if (after) query.set("after", after);
  const answer = await call("GET", `/admin/accounts?${query}`);
  const search = h("input", { type: "search", name: "prefix", value: prefix, placeholder: "account id starts with…",
                              "aria-label": "Search accounts by id prefix", id: "account-search" });
  const go = (p, a) => {
    const q = new URLSearchParams();
    if (p) q.set("prefix", p);
    if (a) q.set("after", a);
    location.hash = `#/accounts${q.toString() ? "?" + q : ""}`;
  };
  const rows = answer.data.map((a) => h("tr", {},
    h("td", {}, h("a", { href: `#/accounts/${enc(a.account)}` }, a.account)),
    h("td", { class: "num" }, money(a.balance_micros)), h("td", { class: "num" }, money(a.held_micros)),
    h("td", { class: "num" }, money(a.available_micros))));
  const pager = h("div", { class: "pager" },  // the browser's Back goes to the page before
    after ? h("button", { type: "button", class: "quiet", onclick: () => go(prefix, "") }, "← First page") : null,
    answer.has_more ? h("button", { type: "button", class: "quiet",
      onclick: () => go(prefix, answer.next_after) }, "Next →") : null);
  const searchForm = h("form", { class: "inline-form", role: "search", onsubmit: (e) => {
    e.preventDefault(); go(search.value.trim(), ""); } },
    search, h("button", { type: "submit" }, "Search"));
  const empty = prefix ? `No account id starts with “${prefix}”.`
    : "No accounts yet. Grant credits to an account id below: that opens it.";
  return [
    pageHead("Accounts", refreshButton()),
    searchForm,
    h("section", { class: "card" }, table(["Account", "Balance", "Held", "Available"], rows, empty), pager),
    h("section", { class: "card narrow" }, h("h2", {}, "Grant credits to an account"),
      actionForm({ class: "grid-form", id: "open-account" }, [
        field("Account id", h("input", { name: "account", required: true, maxlength: "200", spellcheck: "false" })),
        field("Amount (USD)", h("input", { name: "amount", inputmode: "decimal", required: true, placeholder: "10.00" })),
        field("Reason", h("input", { name: "reason", required: true, maxlength: "500", placeholder: "why: shown in the ledger" })),
        h("button", { type: "submit", class: "primary" }, "Grant credits")],
      async (form) => {
        const account = form.account.value.trim();
        if (!account) throw new Error("Enter the account id.");
        const micros = parseUsd(form.amount.value);
        const reason = requiredReason(form.reason.value);
        await call("POST", `/admin/accounts/${enc(account)}/credits`, { amount_micros: micros, reason });
        location.hash = `#/accounts/${enc(account)}`;
      })),
  ];
};

function requiredReason(text) {
  const reason = text.trim();
  if (!reason) throw new Error("Say why, in the reason: it stays in the account's ledger.");
  return reason;
}

pages.account = async (params, id) => {
  const [account, ledger, usage] = await Promise.all([
    call("GET", `/admin/accounts/${enc(id)}`),
    call("GET", `/admin/accounts/${enc(id)}/ledger?after=${enc(params.get("after") || "0")}&limit=51`),
    recentUsage(id)]);
  const credits = actionForm({ class: "grid-form", id: "credits-form" }, [
    h("fieldset", { class: "choice" }, h("legend", {}, "Change"),
      h("label", {}, h("input", { type: "radio", name: "mode", value: "grant", checked: true }), " Add credits"),
      h("label", {}, h("input", { type: "radio", name: "mode", value: "adjust" }), " Remove credits")),
    field("Amount (USD)", h("input", { name: "amount", inputmode: "decimal", required: true, placeholder: "5.00" }),
          "Exact to the micro-USD (6 decimals)."),
    field("Reason", h("input", { name: "reason", required: true, maxlength: "500", placeholder: "shown in the ledger" })),
    h("button", { type: "submit", class: "primary" }, "Apply")],
  async (form) => {
    const micros = parseUsd(form.amount.value);
    const reason = requiredReason(form.reason.value);
    const sign = form.mode.value === "adjust" ? -1 : 1;
    const state = await call("POST", `/admin/accounts/${enc(id)}/credits`,
                             { amount_micros: sign * micros, reason });
    await route();
    flash("ok", `${sign > 0 ? "Added" : "Removed"} ${exactUsd(micros)} (${reason}). ` +
                `Balance now ${exactUsd(state.balance_micros)}.`);
    return null;
  });
  const after = Number(params.get("after") || "0");
  const moreEntries = ledger.data.length > 50;  // one past the page: another page follows
  const entries = ledger.data.slice(0, 50);
  const ledgerRows = entries.map((e) => h("tr", {},
    h("td", { class: "num" }, e.seq), h("td", {}, when(e.at)), h("td", {}, e.kind),
    h("td", { class: "num" }, money(e.amount_micros)), h("td", { class: "num" }, money(e.held_delta_micros)),
    h("td", { class: "num" }, money(e.balance_after_micros)), h("td", {}, e.reason || ""),
    h("td", { class: "mono small" }, e.request_id || "")));
  const base = `#/accounts/${enc(id)}`;
  return [
    pageHead(`Account ${id}`, h("a", { href: "#/accounts", class: "quiet-link" }, "← All accounts"), refreshButton()),
    h("div", { class: "stats" }, statCard("Balance", money(account.balance_micros)),
      statCard("Held", money(account.held_micros), "reserved by calls in flight"),
      statCard("Available", money(account.available_micros), "what new calls may spend")),
    h("section", { class: "card" }, h("h2", {}, "Keys"), keyTable(account.keys, false)),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h2", {}, "Credits"), credits),
      h("section", { class: "card" }, issueKeyForm(id))),
    h("section", { class: "card" }, h("h2", {}, "Recent usage"), usage),
    h("section", { class: "card" }, h("h2", {}, "Ledger"),
      table(["#", "When", "Kind", "Amount", "Held Δ", "Balance after", "Reason", "Request"], ledgerRows,
            after ? "No entries after these." : "No ledger entries yet."),
      h("div", { class: "pager" },
        after ? h("a", { href: base, class: "quiet-link" }, "← First entries") : null,
        moreEntries ? h("a", { href: `${base}?after=${entries[49].seq}`, class: "quiet-link" }, "Next entries →") : null)),
  ];
};

async function recentUsage(account) {
  const answer = await call("GET", `/admin/accounts/${enc(account)}/usage?limit=50`);
  const rows = answer.data.map((r) => h("tr", {},
    h("td", {}, when(r.at)), h("td", {}, r.model), h("td", {}, r.provider),
    h("td", { class: "num" }, count(r.input_tokens)), h("td", { class: "num" }, count(r.output_tokens)),
    h("td", { class: "num" }, money(r.cost_micros)), h("td", { class: "mono small" }, r.request_id)));
  return table(["When", "Model", "Provider", "In", "Out", "Cost", "Request"], rows,
               "No calls yet: its calls show here once they are billed.");
}

// Keys --------------------------------------------------------------------------------------

function keyState(k) {
  const now = Date.now() / 1000;
  if (k.revoked_at) return badge("bad", "revoked");
  if (k.expires_at && k.expires_at <= now) return badge("muted", "expired");
  return badge("ok", "active");
}

function keyTable(keys, withAccount) {
  const rows = keys.map((k) => h("tr", { "data-key-id": k.id },
    h("td", { class: "mono" }, `${k.prefix}…`),
    withAccount ? h("td", {}, h("a", { href: `#/accounts/${enc(k.account)}` }, k.account)) : null,
    h("td", {}, k.label || ""), h("td", {}, keyState(k)),
    h("td", {}, k.models ? k.models.join(", ") : h("span", { class: "muted" }, "all")),
    h("td", { class: "num" }, k.rpm || h("span", { class: "muted" }, "—")),
    h("td", { class: "num" }, k.spend_cap_micros ? money(k.spend_cap_micros) : h("span", { class: "muted" }, "—")),
    h("td", {}, when(k.expires_at)), h("td", {}, when(k.created_at)),
    h("td", {}, k.revoked_at ? when(k.revoked_at) : h("button", {
      type: "button", class: "danger small", "aria-label": `Revoke key ${k.prefix}`,
      onclick: () => revoke(k) }, "Revoke"))));
  const headers = ["Key", withAccount ? "Account" : null, "Label", "State", "Models", "RPM",
                   "Spend cap", "Expires", "Created", "Revoked"].filter(Boolean);
  return table(headers, rows, "No keys. Issue one below.");
}

async function revoke(k) {
  if (!await confirmDialog("Revoke this key?", `Calls with ${k.prefix}… will be refused from now on. This cannot be undone.`, "Revoke")) return;
  try {
    const record = await call("DELETE", `/admin/keys/${enc(k.id)}`);
    await route();
    if (record.already_revoked) {
      flash("info", `${k.prefix}… was already revoked (${toDate(record.revoked_at).toLocaleString()}): nothing changed.`);
    } else {
      flash("ok", `${k.prefix}… is revoked: calls with it are refused now.`);
    }
  } catch (err) {
    flash("error", `Could not revoke ${k.prefix}…: ${err.message}`);
  }
}

function flash(kind, text) {
  const box = h("p", { id: "flash", class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
  const old = document.getElementById("flash");
  if (old) old.replaceWith(box); else main().prepend(box);
}

// `account`: the key's account, fixed; else the form asks (starting from `suggested`).
function issueKeyForm(account, suggested) {
  return actionForm({ class: "grid-form", id: "issue-key" }, [
    h("h3", {}, "Issue a key"),
    account ? null : field("Account id", h("input", { name: "account", required: true, maxlength: "200",
                                                      spellcheck: "false", value: suggested || "" })),
    field("Label", h("input", { name: "label", maxlength: "200", placeholder: "e.g. laptop" })),
    field("Models", h("input", { name: "models", placeholder: "all, or: gpt-4o-mini, claude-haiku-4-5" }),
          "Comma-separated model ids; empty: every model."),
    field("Requests per minute", h("input", { name: "rpm", inputmode: "numeric", placeholder: "no limit" })),
    field("Spend cap (USD)", h("input", { name: "cap", inputmode: "decimal", placeholder: "no cap" })),
    field("Expires after (hours)", h("input", { name: "ttl", inputmode: "numeric", placeholder: "never" })),
    h("button", { type: "submit", class: "primary" }, "Issue key")],
  async (form) => {
    const body = { account: account || form.account.value.trim() };
    if (!body.account) throw new Error("Enter the account id the key bills.");
    if (form.label.value.trim()) body.label = form.label.value.trim();
    const models = form.models.value.split(",").map((m) => m.trim()).filter(Boolean);
    if (models.length) body.models = models;
    const whole = (name, text) => {
      if (!text.trim()) return undefined;
      if (!/^\d{1,9}$/.test(text.trim()) || Number(text) < 1) throw new Error(`${name} must be a whole number above zero.`);
      return Number(text);
    };
    body.rpm = whole("Requests per minute", form.rpm.value);
    body.ttl_hours = whole("Expires after (hours)", form.ttl.value);
    if (form.cap.value.trim()) body.spend_cap_micros = parseUsd(form.cap.value);
    const issued = await call("POST", "/admin/keys", body);
    await showNewKey(issued);
    await route();
    return null;
  });
}

async function showNewKey(issued) {
  const box = h("input", { class: "mono new-key", readonly: true, value: issued.key, "aria-label": "The new key",
                           id: "new-key", size: String(issued.key.length) });
  const copy = h("button", { type: "button", onclick: async () => {
    box.select();
    try { await navigator.clipboard.writeText(issued.key); copy.textContent = "Copied"; }
    catch (err) { copy.textContent = "Press Ctrl+C"; }
  } }, "Copy");
  setTimeout(() => box.select(), 0);
  await dialog("Your new key", [
    h("p", {}, "Copy it now: the router keeps only its hash, and this is the only time it is shown."),
    h("div", { class: "inline-form" }, box, copy),
    h("p", { class: "muted small" }, `For account ${issued.account}; its id is ${issued.id}.`)],
  [["I have stored it", "done", "primary"]]);
}

pages.keys = async (params) => {
  const account = params.get("account") || "";
  const answer = await call("GET", `/admin/keys${account ? "?account=" + enc(account) : ""}`);
  const filter = h("input", { type: "search", name: "account", value: account, placeholder: "account id",
                              "aria-label": "Show the keys of one account" });
  return [
    pageHead("Keys", refreshButton()),
    h("form", { class: "inline-form", role: "search", onsubmit: (e) => {
      e.preventDefault(); location.hash = filter.value.trim() ? `#/keys?account=${enc(filter.value.trim())}` : "#/keys"; } },
      filter, h("button", { type: "submit" }, "Filter")),
    h("section", { class: "card" }, keyTable(answer.data, true)),
    h("section", { class: "card narrow" }, issueKeyForm(null, account)),
  ];
};

// Providers -----------------------------------------------------------------------------

function credentialsSummary(p) {
  const ok = p.credentials.filter((c) => c.state === "ok").length;
  return `${ok} of ${p.credentials.length} usable`;
}

function poolFigures(pool) {
  if (!pool) return h("span", { class: "muted" }, "no pool");
  return h("dl", { class: "figures" }, Object.entries(pool).map(([k, v]) =>
    [h("dt", {}, k.replace(/_/g, " ")), h("dd", {}, String(v))]));
}

pages.providers = async () => {
  const answer = await call("GET", "/admin/providers");
  const rows = answer.data.map((p) => h("tr", {},
    h("td", {}, h("a", { href: `#/providers/${enc(p.name)}` }, p.name)), h("td", {}, p.kind),
    h("td", {}, health(p)), h("td", {}, breakerBadge(p.breaker)),
    h("td", {}, p.probe ? probeText(p.probe) : ""), h("td", {}, credentialsSummary(p)),
    h("td", { class: "num" }, p.pool && p.pool.in_flight !== undefined ? p.pool.in_flight : "—")));
  return [
    pageHead("Providers", h("a", { href: "#/providers/new", class: "button" }, "Add a provider"), refreshButton()),
    h("section", { class: "card" }, table(["Provider", "Kind", "Health", "Breaker", "Last probe", "Credentials", "In flight"],
      rows, "No providers. Add one, or list them in the config file (docs/configuration.md).")),
  ];
};

function probeText(probe) {
  if (probe.state === "pending") return h("span", { class: "muted" }, "first probe under way");
  const text = probe.state === "ok" ? `ok in ${probe.latency_ms} ms` : `${(probe.reason || "failed").replace(/_/g, " ")}`;
  return h("span", { title: probe.detail || "" }, text, " · ", when(probe.checked_at));
}

pages.provider = async (params, name) => {
  const view = await call("GET", `/admin/providers/${enc(name)}`);
  const p = view.stats;
  const creds = p ? p.credentials.map((c) => h("tr", {},
    h("td", { class: "num" }, c.index), h("td", { class: "mono" }, c.prefix), h("td", {}, c.kind),
    h("td", {}, badge(c.state === "ok" ? "ok" : c.state === "cooling_down" ? "warn" : "bad", c.state.replace("_", " "))),
    h("td", {}, c.reason || ""), h("td", { class: "num" }, c.cooldown_s ? `${c.cooldown_s} s` : "—"),
    h("td", { class: "num" }, c.in_flight), h("td", { class: "num" }, c.uses))) : [];
  const remove = view.source === "store" ? h("button", { type: "button", class: "danger", onclick: async () => {
    if (!await confirmDialog(`Remove ${name}?`, "It takes no new calls in any router; calls in flight finish.", "Remove")) return;
    try { await call("DELETE", `/admin/providers/${enc(name)}`); location.hash = "#/providers"; }
    catch (err) { flash("error", `Could not remove ${name}: ${err.message}`); }
  } }, "Remove provider") : null;
  return [
    pageHead(`Provider ${name}`, h("a", { href: "#/providers", class: "quiet-link" }, "← All providers"), remove, refreshButton()),
    h("div", { class: "stats" },
      statCard("Health", p ? health(p) : badge("muted", "not running here")),
      statCard("Breaker", p ? breakerBadge(p.breaker) : "—",
               p ? `${p.breaker.consecutive_failures} failures in a row · opened ${p.breaker.times_opened}×` : null),
      statCard("Last probe", p && p.probe ? h("span", { class: "stat-small" }, probeText(p.probe)) : "—",
               p && p.probe ? p.probe.detail : null),
      statCard("Source", view.source === "store" ? "provider store" : "config file",
               `${view.kind} · ${view.strategy || ""} · ${view.key_count} key(s)`)),
    h("section", { class: "card" }, h("h2", {}, "Credentials"),
      table(["#", "Prefix", "Kind", "State", "Reason", "Cooldown", "In flight", "Uses"], creds,
            "No credentials: calls need a key (add one in the config or the provider store).")),
    h("section", { class: "card" }, h("h2", {}, "Connection pool"), p ? poolFigures(p.pool) : "—",
      h("p", { class: "muted small" }, `Upstream: ${view.base_url || "the kind's default"} · at most ${view.max_concurrent || "∞"} calls at once`)),
  ];
};

const KINDS = ["openai", "anthropic", "openai_compatible", "ollama", "openrouter", "azure", "gemini",
               "vertex", "vertex_gemini", "bedrock", "bedrock_gateway"];

pages.newProvider = async () => [
  pageHead("Add a provider", h("a", { href: "#/providers", class: "quiet-link" }, "← All providers")),
  h("section", { class: "card narrow" }, actionForm({ class: "grid-form", id: "provider-form" }, [
    field("Name", h("input", { name: "name", required: true, pattern: "[a-z0-9_-]+", spellcheck: "false" }),
          "Lower-case letters, digits, - and _: routes name it (name:model)."),
    field("Kind", h("select", { name: "kind" }, KINDS.map((k) => h("option", { value: k }, k)))),
    field("Base URL", h("input", { name: "base_url", type: "url", placeholder: "https://…" }), "Empty: the kind's default."),
    field("API keys", h("textarea", { name: "api_keys", rows: "3", spellcheck: "false", autocomplete: "off" }),
          "One per line. Stored encrypted (ROUTER_SECRET_KEY); never shown again."),
    field("Most calls at once", h("input", { name: "max_concurrent", inputmode: "numeric", placeholder: "default" })),
    h("button", { type: "submit", class: "primary" }, "Add provider")],
  async (form) => {
    const name = form.name.value.trim();
    if (!name) throw new Error("Enter the provider's name.");
    const body = { kind: form.kind.value };
    if (form.base_url.value.trim()) body.base_url = form.base_url.value.trim();
    const keys = form.api_keys.value.split("\n").map((k) => k.trim()).filter(Boolean);
    if (keys.length) body.api_keys = keys;
    if (form.max_concurrent.value.trim()) {
      if (!/^\d+$/.test(form.max_concurrent.value.trim())) throw new Error("Most calls at once must be a whole number.");
      body.max_concurrent = Number(form.max_concurrent.value.trim());
    }
    await call("POST", `/admin/providers/${enc(name)}`, body);
    form.api_keys.value = "";
    location.hash = `#/providers/${enc(name)}`;
    return null;
  })),
];

// Streams ------------------------------------------------------------------------------------

pages.streams = async () => {
  const [streams, providers] = await Promise.all([call("GET", "/admin/streams"), call("GET", "/admin/providers")]);
  const rows = streams.data.map((st) => h("tr", {},
    h("td", { class: "mono small" }, st.request_id), h("td", {}, st.account ? h("a", { href: `#/accounts/${enc(st.account)}` }, st.account) : ""),
    h("td", {}, st.done ? badge("muted", "ended") : st.cancelled ? badge("bad", "cancelled") : badge("ok", "live")),
    h("td", { class: "num" }, st.readers), h("td", {}, st.background ? "yes" : "no"),
    h("td", { class: "num" }, st.last_seq), h("td", { class: "num" }, count(st.kept_bytes))));
  const inFlight = providers.data.map((p) => h("tr", {}, h("td", {}, p.name),
    h("td", { class: "num" }, p.pool && p.pool.in_flight !== undefined ? p.pool.in_flight : "—")));
  return [
    pageHead("Streams", refreshButton()),
    h("p", { class: "muted" }, "Refreshed every 5 seconds. A resumable stream stays here while it runs and for the resume window after it ends."),
    h("section", { class: "card" }, h("h2", {}, "Resumable streams"),
      table(["Request", "Account", "State", "Readers", "Background", "Events", "Kept bytes"], rows,
            "No resumable streams now. Streams clients start with resume support show here while they run.")),
    h("section", { class: "card narrow" }, h("h2", {}, "Calls in flight per provider"),
      table(["Provider", "In flight"], inFlight, "No providers.")),
  ];
};

// Outbox --------------------------------------------------------------------------------------

pages.outbox = async (params) => {
  const state = params.get("state") || "";
  const answer = await call("GET", `/admin/outbox${state ? "?state=" + enc(state) : ""}`);
  const sinks = Object.entries(answer.pending);
  const rows = answer.data.map((e) => h("tr", { "data-event-id": e.event_id },
    h("td", {}, e.sink), h("td", { class: "mono small" }, e.request_id),
    h("td", {}, e.account || ""), h("td", {}, badge(e.state === "dead" ? "bad" : "warn", e.state)),
    h("td", { class: "num" }, e.attempts), h("td", {}, e.state === "dead" ? "—" : when(e.next_at)),
    h("td", { class: "small wrap" }, e.last_error || ""),
    h("td", {}, e.state === "dead" ? h("button", { type: "button", class: "small", onclick: async () => {
      try { await call("POST", `/admin/outbox/${enc(e.event_id)}/retry`); await route();
            flash("ok", `Event ${e.event_id} goes out again.`); }
      catch (err) { flash("error", `Could not retry ${e.event_id}: ${err.message}`); }
    } }, "Retry") : "")));
  const tabs = [["", "All"], ["pending", "Pending"], ["dead", "Dead letters"]].map(([value, label]) =>
    h("a", { href: `#/outbox${value ? "?state=" + value : ""}`, class: "tab", "aria-current": value === state ? "page" : null }, label));
  return [
    pageHead("Outbox", refreshButton()),
    h("div", { class: "stats" }, sinks.length ? sinks.map(([sink, n]) => statCard(`Waiting for ${sink}`, count(n)))
      : statCard("Waiting", "0", "every event reached its sink")),
    h("nav", { class: "tabs", "aria-label": "Outbox filter" }, tabs),
    h("section", { class: "card" }, table(["Sink", "Request", "Account", "State", "Attempts", "Next try", "Last error", ""],
      rows, state === "dead" ? "No dead letters: nothing gave up." : "Nothing waiting: every event reached its sink.")),
  ];
};

// ---- Routing -------------------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, query] = raw.split("?");
  let parts;
  try { parts = path.split("/").filter(Boolean).map(decodeURIComponent); }
  catch (err) { parts = ["not-found"]; }  // a malformed %-escape
  return { parts, params: new URLSearchParams(query || "") };
}

let routeSerial = 0;

async function route() {
  if (!session.csrf) return;
  const { parts, params } = parseHash();
  const section = parts[0] || "overview";
  let page, arg;
  if (section === "accounts" && parts[1] !== undefined) { page = pages.account; arg = parts[1]; }
  else if (section === "providers" && parts[1] === "new") page = pages.newProvider;
  else if (section === "providers" && parts[1] !== undefined) { page = pages.provider; arg = parts[1]; }
  else page = Object.hasOwn(pages, section) ? pages[section] : null;
  for (const link of document.querySelectorAll(".sidebar a")) {
    link.setAttribute("aria-current", link.dataset.section === section ? "page" : "false");
  }
  const serial = ++routeSerial;
  clearInterval(refreshTimer);
  const target = main();
  target.setAttribute("aria-busy", "true");
  let content;
  if (!page) {
    content = [pageHead("Not found"), notice("info", "No such page. Pick a section on the left.")];
  } else {
    try {
      content = await page(params, arg);
    } catch (err) {
      if (err.status === 401) return;
      content = [pageHead(section[0].toUpperCase() + section.slice(1)), errorPanel(err, () => route())];
    }
  }
  if (serial !== routeSerial) return;  // another page was asked for meanwhile
  const focusInPage = target.contains(document.activeElement) && document.activeElement !== target;
  const focusedId = focusInPage ? document.activeElement.id : null;
  target.replaceChildren(...[content].flat(Infinity).filter(Boolean));
  target.setAttribute("aria-busy", "false");
  if (focusedId && document.getElementById(focusedId)) document.getElementById(focusedId).focus();
  if (section === "streams") refreshTimer = setInterval(() => route(), 5000);
  if (section === "overview") refreshTimer = setInterval(() => route(), 30000);
}

function keyboard(event) {
  if (event.key === "/" && !["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName)) {
    const search = document.querySelector("main input[type=search]");
    if (search) { event.preventDefault(); search.focus(); }
  }
}

async function boot() {
  document.getElementById("signin-form").addEventListener("submit", signIn);
  document.getElementById("signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => { main().focus({ preventScroll: true }); route(); });
  document.addEventListener("keydown", keyboard);
  try {
    startSession(await call("GET", "/console/session"));
  } catch (err) {
    showSignIn(err.status === 401 ? "" : err.message);
  }
}

document.addEventListener("DOMContentLoaded", boot);
