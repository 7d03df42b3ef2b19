// DemoFab review page: helpers shared by the pages (no framework, no build step).
"use strict";

async function api(url, options) {
  const r = await fetch(url, options);
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text }; }
  if (!r.ok) {
    const detail = body && body.detail ? body.detail : r.statusText;
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return v.toFixed(digits === undefined ? 2 : digits);
  return String(v);
}

function successText(v) { return v === true ? "success" : v === false ? "failure" : "unknown"; }

// the latest index i with times[i] <= t (0 when t is before the first)
function latestAtOrBefore(times, t) {
  let lo = 0, hi = times.length - 1, best = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (times[mid] <= t) { best = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return best;
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];

// size a canvas's backing store to its CSS size (sharp on high-DPI screens)
function fitCanvas(canvas) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return { ctx, w, h };
}

function header(release, here) {
  const h = document.querySelector("header");
  h.replaceChildren(
    el("h1", { text: `${release.name} v${release.version}` }),
    el("nav", {},
       el("a", { href: "/", "data-testid": "nav-list", text: "Episodes" }),
       el("a", { href: "/stats", "data-testid": "nav-stats", text: "Statistics" })),
    el("span", { class: "dim", text: `${release.episodes} episodes · labels: ${release.labels_file}` }));
  document.title = `${here} · ${release.name} v${release.version} · DemoFab review`;
}
