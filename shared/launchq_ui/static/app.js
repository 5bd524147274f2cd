// launchq dashboard: short polling of the JSON endpoints (every 2 s) keeps the items table and
// the item page current without a reload. No framework: a few DOM updates, text only (never
// innerHTML with server data), so item text cannot inject markup.
"use strict";

const POLL_MS = 2000;
const TERMINAL = new Set([
  "SUCCEEDED", "FAILED", "REJECTED", "CANCELLED", "EXPIRED", "PARTIALLY_SUCCEEDED",
]);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  // An empty string adds nothing, so an empty cell stays :empty (hidden in a phone's cards).
  for (const child of children) if (child !== "") node.append(child);
  return node;
}

function duration(s) {
  if (s === null || s === undefined) return "-";
  if (s < 60) return s.toFixed(1) + "s";
  const whole = Math.floor(s), m = Math.floor(whole / 60) % 60, h = Math.floor(whole / 3600) % 24;
  const d = Math.floor(whole / 86400), sec = whole % 60, pad = (n) => String(n).padStart(2, "0");
  if (d) return `${d}d${pad(h)}h`;
  if (h) return `${h}h${pad(m)}m`;
  return `${m}m${pad(sec)}s`;
}

function stateBadge(state) {
  return el("span", { class: "state s-" + state }, state || "-");
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

// A sweep's progress (views.progress) as templates/sweep.html draws it: keep the two in step.
function progressBar(p) {
  const bar = svgEl("svg", { class: "progress-bar", viewBox: "0 0 100 4",
    preserveAspectRatio: "none", role: "img", "aria-label": p.label });
  const title = svgEl("title", {});
  title.textContent = p.label;
  bar.append(title);
  for (const s of p.segments) {
    bar.append(svgEl("rect", { class: "seg-" + s.group, x: s.x, y: 0, width: s.width, height: 4 }));
  }
  const text = el("span", { class: "progress-text" }, el("strong", {}, p.done_text));
  for (const g of p.legend) text.append(" ", el("span", { class: "key key-" + g.group }, g.text));
  return el("div", { class: "progress" }, el("span", { class: "progress-title" }, p.title), bar, text);
}

async function poll(url, apply, status) {
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(String(response.status));
    const keepGoing = apply(await response.json());
    if (status) { status.textContent = "live"; status.classList.remove("stale"); }
    if (keepGoing === false) return;
  } catch (err) {
    if (status) { status.textContent = "reconnecting…"; status.classList.add("stale"); }
  }
  setTimeout(() => poll(url, apply, status), POLL_MS);
}

function itemsPage() {
  const table = document.getElementById("items");
  const body = table.querySelector("tbody");
  const base = table.dataset.base;
  poll(table.dataset.api, (data) => {
    // The same cells as items.html renders: keep the two in step.
    const rows = data.items.map((row) => {
      const link = el("a", { class: "id", href: base + "/items/" + encodeURIComponent(row.item_id) }, row.item_id);
      const run = row.display_name ? [el("span", { class: "name" }, row.display_name), " ", link] : [link];
      if (row.sweep_of) {  // a sweep's child (listed under a state filter or a search)
        const parent = el("a", { href: base + "/items/" + encodeURIComponent(row.sweep_of) }, row.sweep_of);
        run.push(" ", el("span", { class: "of" }, "#" + row.child_number + " of ", parent));
      }
      const cell = (cls, label, text) => el("td", cls ? { class: cls, "data-label": label } : { "data-label": label }, text);
      return el("tr", { "data-item": row.item_id },
        el("th", { scope: "row", class: "run" }, ...run),
        el("td", { "data-label": "state" }, stateBadge(row.state)),
        row.progress ? cell("why wide", "progress", progressBar(row.progress))
          : cell("why wide", "why / error", row.error || row.reason || ""),
        cell("ran wide", "what ran", row.ran || "-"),
        cell("by", "by", row.submitted_by || "-"),
        cell("", "priority", row.priority_name),
        cell("num", "age", duration(row.age_s)),
        cell("num opt", "to submit", duration(row.time_to_submit_s)),
        cell("num", "run time", duration(row.run_time_s)),
        cell("num opt", "attempts", String(row.attempts)));
    });
    if (!rows.length) rows.push(el("tr", { class: "none" }, el("td", { colspan: "10" },
      !(data.state || data.q) && data.more ?
        "Only sweeps' children here (each sweep's page lists them); Older goes further back." :
      !(data.state || data.q) ? "No items." :
        data.q && data.more ? "No items match here; Older searches further back." :
          "No items match.")));
    // The page's own window stays put (its cursor is in the polled URL); what follows it can
    // change as items arrive, so the Older link follows the last poll: nothing is skipped.
    const older = document.getElementById("older");
    if (older) {
      if (data.older_url) older.setAttribute("href", data.older_url);
      older.hidden = !data.older_url;
    }
    // Keep keyboard focus on the same item's link across a refresh.
    const focused = document.activeElement && document.activeElement.closest("tr[data-item]");
    const focusedId = focused ? focused.dataset.item : null;
    body.replaceChildren(...rows);
    if (focusedId) {
      const again = body.querySelector(`tr[data-item="${CSS.escape(focusedId)}"] a`);
      if (again) again.focus();
    }
  }, document.getElementById("live-status"));
}

function itemPage() {
  const root = document.getElementById("item");
  const log = document.getElementById("log");
  const follow = document.getElementById("follow");
  let afterEnd = 0;
  poll(root.dataset.api, (d) => {
    const state = document.getElementById("state");
    state.textContent = d.state;
    state.className = "state s-" + d.state;
    document.getElementById("description").textContent =
      (d.description || "") + (d.reason ? " · " + d.reason : "");
    document.getElementById("attempts").textContent = String(d.attempts);
    document.getElementById("to-submit").textContent = duration(d.time_to_submit_s);
    document.getElementById("run-time").textContent = duration(d.run_time_s);
    document.getElementById("job").textContent = d.job ? d.job.name : "-";
    // The job's links appear once it exists (item.html draws the same).
    const links = (d.links || []).map((l) => {
      const attrs = { href: l.href };
      if (l.external) Object.assign(attrs, { rel: "noopener noreferrer", target: "_blank" });
      return el("span", {}, el("a", attrs, l.text), " ",
        el("span", { class: "muted note" }, "(" + l.note + ")"));
    });
    document.getElementById("links").replaceChildren(...links);
    const history = d.history.map((e) => el("tr", {},
      el("td", { class: "mono wide", "data-label": "at (UTC)" }, e.at || ""),
      el("td", { "data-label": "from" }, e.from || "·"),
      el("td", { "data-label": "to" }, stateBadge(e.to)),
      el("td", { class: "wide", "data-label": "cause" }, e.cause || "")));
    document.getElementById("history").replaceChildren(...history);
    if (d.error_detail) {
      const extra = (d.error_detail.errors || []).slice(1).map((s) => "\n" + s.message);
      document.getElementById("error").textContent = d.error_detail.message + extra.join("");
      document.getElementById("error-section").hidden = false;
    }
    if (d.progress) sweepParts(d, root.dataset.base);
    // A sweep's page has no log: its children have theirs.
    const unavailable = document.getElementById("log-unavailable");
    if (unavailable) {
      unavailable.hidden = !d.log_unavailable || d.log.length > 0;
      unavailable.textContent = d.log_unavailable || "";
    }
    if (log && follow && follow.checked) {
      const lines = d.log.map((l) => el("span",
        { class: ["ERROR", "CRITICAL", "ALERT", "EMERGENCY"].includes(l.severity) ? "err" : "" },
        `${l.timestamp.slice(11, 23)} ${l.replica} ${l.message}\n`));
      log.replaceChildren(...lines);
      log.scrollTop = log.scrollHeight;
    }
    const form = document.getElementById("cancel-form");
    if (form && TERMINAL.has(d.state)) form.hidden = true;
    // Stop a few polls after the item ended: its last log lines may land a moment later.
    if (TERMINAL.has(d.state)) {
      afterEnd += 1;
      if (afterEnd > 3) return false;
    }
    return true;
  }, null);
}

// A sweep's page: its progress and its page of children (item.html draws the same).
function sweepParts(d, base) {
  const progress = document.getElementById("progress");
  if (progress) progress.replaceChildren(progressBar(d.progress));
  const body = document.getElementById("child-rows");
  if (!body || !d.child_page) return;
  const rows = d.child_page.rows.map((c) => el("tr", { "data-item": c.item_id },
    el("th", { scope: "row", class: "run" },
      el("a", { class: "id", href: base + "/items/" + encodeURIComponent(c.item_id) }, c.item_id)),
    el("td", { "data-label": "state" }, stateBadge(c.state)),
    el("td", { class: "why wide", "data-label": "why / error" }, c.error || c.reason || ""),
    el("td", { "data-label": "job" }, el("span", { class: "mono" }, c.job_id || "-")),
    el("td", { class: "num", "data-label": "run time" }, duration(c.run_time_s)),
    el("td", { class: "num opt", "data-label": "attempts" }, String(c.attempts))));
  if (!rows.length) rows.push(el("tr", { class: "none" },
    el("td", { colspan: "6" }, "No children recorded yet.")));
  body.replaceChildren(...rows);
  const next = document.getElementById("children-next");
  if (next) {
    if (d.child_page.next_url) next.setAttribute("href", d.child_page.next_url);
    next.hidden = !d.child_page.next_url;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "items") itemsPage();
  if (page === "item") itemPage();
});
