"""The page ``amnet serve`` shows: HTML, CSS and JavaScript as string constants.

Kept in a module rather than as package data so it installs with the package and needs no
``pyproject`` change. The script builds every element with ``textContent`` (never ``innerHTML``), so
ids and attribute values from a dataset cannot inject markup; the server's Content-Security-Policy
allows only these same-origin files.
"""

from __future__ import annotations

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>amnet: fashion search with attribute manipulation</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>amnet <span>this item, but with these attributes</span></h1>
  <p id="model-info">loading model…</p>
</header>
<main>
  <aside id="panel">
    <section id="query-card" class="card">
      <h2>Query</h2>
      <div id="query-empty" class="hint">Pick an image from the gallery or upload one.</div>
      <div id="query-figure" hidden>
        <img id="query-img" alt="query image">
        <dl id="query-attrs"></dl>
      </div>
      <p id="query-id"></p>
      <div class="buttons">
        <label class="button">Upload an image
          <input id="upload" type="file" accept="image/jpeg,image/png,image/webp,image/gif,image/bmp,image/tiff">
        </label>
        <button id="browse" type="button">Browse gallery</button>
      </div>
    </section>
    <section id="changes-card" class="card">
      <h2>Change attributes</h2>
      <p class="hint">Each change rewrites the query with that value's prototype from the model's memory.</p>
      <div id="changes"></div>
      <div class="buttons">
        <label for="k">results</label>
        <select id="k"><option>10</option><option selected>20</option><option>40</option></select>
        <button id="reset" type="button">Keep all</button>
      </div>
    </section>
    <p id="error" role="alert" hidden></p>
  </aside>
  <section id="content">
    <nav id="trail" aria-label="previous queries" hidden></nav>
    <section id="results-section" hidden>
      <h2>Results <span id="status"></span></h2>
      <div id="results" class="grid"></div>
    </section>
    <section id="gallery-section">
      <h2>Gallery <span class="hint">a random sample; click one to search with it</span>
        <button id="shuffle" type="button">Shuffle</button></h2>
      <div id="gallery" class="grid"></div>
    </section>
  </section>
</main>
</body>
</html>
"""

APP_CSS = """
:root { --ok: #168a3c; --bad: #b42828; --ink: #1d1d1f; --muted: #6b6b70; --line: #dcdce0; --accent: #2856c8; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: #f5f5f7; }
header { display: flex; align-items: baseline; gap: 24px; padding: 12px 24px; background: #fff;
         border-bottom: 1px solid var(--line); }
h1 { margin: 0; font-size: 20px; }
h1 span { font-weight: 400; color: var(--muted); font-size: 15px; margin-left: 8px; }
h2 { font-size: 15px; margin: 0 0 10px; display: flex; align-items: center; gap: 10px; }
#model-info { margin: 0; color: var(--muted); }
main { display: flex; gap: 20px; padding: 20px 24px; align-items: flex-start; }
#panel { width: 320px; flex: none; position: sticky; top: 12px; }
#content { flex: 1; min-width: 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px; margin-bottom: 14px; }
.hint { color: var(--muted); font-size: 12px; font-weight: 400; margin: 0 0 8px; }
#query-figure { display: flex; gap: 12px; align-items: flex-start; }
#query-img { width: 128px; height: 128px; flex: none; object-fit: contain; background: #eee; border-radius: 6px;
             border: 3px solid var(--accent); }
#query-id { font-family: ui-monospace, monospace; font-size: 12px; color: var(--muted); margin: 4px 0 10px;
            overflow-wrap: anywhere; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 1px 10px; margin: 0; font-size: 13px; }
dt { color: var(--muted); }
dd { margin: 0; }
.buttons { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
button, .button { font: inherit; padding: 5px 12px; border: 1px solid var(--line); border-radius: 6px;
                  background: #fff; cursor: pointer; }
button:hover, .button:hover { border-color: var(--accent); }
#upload { position: absolute; width: 1px; height: 1px; opacity: 0; }
.button:focus-within { outline: 2px solid var(--accent); }
#changes { display: grid; grid-template-columns: auto 1fr; gap: 6px 10px; align-items: center;
           margin-bottom: 12px; }
#changes label { color: var(--muted); }
select { font: inherit; padding: 3px 4px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
select.changed { border-color: var(--accent); background: #eef2fc; font-weight: 600; }
#error { background: #fdecec; color: var(--bad); border: 1px solid #f3c0c0; border-radius: 8px;
         padding: 10px 12px; margin: 0; }
#status { font-weight: 400; color: var(--muted); font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
.tile { display: flex; flex-direction: column; justify-content: flex-start; width: 100%; text-align: left;
        padding: 6px; background: #fff; border: 3px solid #fff;
        border-radius: 8px; box-shadow: 0 0 0 1px var(--line); cursor: pointer; font: inherit; color: inherit; }
.tile:hover { box-shadow: 0 0 0 1px var(--accent), 0 2px 8px rgba(0, 0, 0, 0.12); }
.tile:focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
.tile.match { border-color: var(--ok); }
.tile img { width: 100%; aspect-ratio: 1; object-fit: contain; background: #eee; border-radius: 4px;
            image-rendering: auto; }
.tile .head { display: flex; justify-content: space-between; font-size: 12px; margin: 4px 0 2px; }
.tile .rank { font-weight: 600; }
.tile .dist { color: var(--muted); font-family: ui-monospace, monospace; }
.tile ul { list-style: none; margin: 0; padding: 0; font-size: 12px; }
.tile li { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; font-weight: 600; }
.tile li.ok { color: var(--ok); }
.tile li.bad { color: var(--bad); }
.tile li.ok::before { content: "✓ "; }
.tile li.bad::before { content: "✗ "; }
.tile .rest { margin: 2px 0 0; font-size: 12px; color: var(--muted); }
.legend { display: inline-block; width: 10px; height: 10px; border: 2px solid var(--ok); border-radius: 2px;
          vertical-align: -1px; }
#trail { display: flex; gap: 6px; align-items: center; margin-bottom: 14px; flex-wrap: wrap;
         color: var(--muted); font-size: 12px; }
#trail button { padding: 2px; width: 44px; height: 44px; }
#trail img { width: 100%; height: 100%; object-fit: contain; }
#trail .current { border-color: var(--accent); border-width: 2px; }
#gallery-section, #results-section { margin-bottom: 24px; }
.noimg { width: 100%; aspect-ratio: 1; display: flex; align-items: center; justify-content: center;
         background: #eee; color: var(--muted); border-radius: 4px; font-size: 12px; }
@media (max-width: 760px) {
  header { flex-direction: column; gap: 2px; }
  main { flex-direction: column; }
  #panel { width: 100%; position: static; }
}
"""

APP_JS = r"""
"use strict";
const MAX_UPLOAD = 5 * 1024 * 1024;
const state = { info: null, query: null, trail: [], pending: 0 };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

const imgUrl = (id) => "/img/" + encodeURIComponent(id);

function thumb(id) {
  // Gallery thumbnail, or a placeholder when the server has no gallery images (started without --gallery).
  if (state.info.has_images) return el("img", { src: imgUrl(id), alt: id, loading: "lazy" });
  return el("div", { class: "noimg", textContent: "no image" });
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const resp = await fetch(path, init);
  let payload = null;
  try { payload = await resp.json(); } catch (e) { payload = null; }
  if (!resp.ok) throw new Error((payload && payload.error) || ("HTTP " + resp.status));
  return payload;
}

function changes() {
  const out = {};
  for (const select of document.querySelectorAll("#changes select")) {
    if (select.value) out[select.dataset.attr] = select.value;
    select.classList.toggle("changed", Boolean(select.value));
  }
  return out;
}

function buildChanges() {
  const box = $("changes");
  box.replaceChildren();
  for (const attr of state.info.attributes) {
    const id = "change-" + attr.name;
    const current = state.query && state.query.attributes ? state.query.attributes[attr.name] : null;
    const select = el("select", { id, dataset: { attr: attr.name }, onchange: search },
      el("option", { value: "", textContent: current && current !== "?" ? "keep (" + current + ")" : "keep" }),
      ...attr.values.map((v) => el("option", { value: v, textContent: v === current ? v + " (current)" : v })));
    box.append(el("label", { htmlFor: id, textContent: attr.name }), select);
  }
}

function attrList(attributes, wanted) {
  // Requested attributes first, one per line (green = as requested, red = not); the rest as one line.
  const names = Object.keys(attributes);
  const changed = names.filter((n) => n in wanted);
  const rest = names.filter((n) => !(n in wanted));
  const box = el("div", { title: names.map((n) => n + ": " + attributes[n]).join("\n") });
  if (changed.length) {
    box.append(el("ul", {}, ...changed.map((n) => el("li", {
      class: attributes[n] === wanted[n] ? "ok" : "bad", textContent: n + ": " + attributes[n] }))));
  }
  box.append(el("p", { class: "rest", textContent: rest.map((n) => attributes[n]).join(" · ") }));
  return box;
}

function tile(item, extra, onpick) {
  const button = el("button", { type: "button", class: "tile" + (extra.match ? " match" : ""),
    title: "search with " + item.image_id, dataset: { id: item.image_id }, onclick: onpick });
  button.append(thumb(item.image_id));
  if (extra.head) button.append(extra.head);
  button.append(attrList(item.attributes, extra.wanted || {}));
  return button;
}

function renderQuery() {
  const q = state.query;
  $("query-empty").hidden = Boolean(q);
  $("query-figure").hidden = !q;
  $("query-attrs").replaceChildren();
  if (!q) return;
  const shown = Boolean(q.upload || state.info.has_images);
  $("query-img").hidden = !shown;
  if (shown) $("query-img").src = q.upload ? q.previewUrl : imgUrl(q.gallery_id);
  $("query-id").textContent = q.label;
  for (const [name, value] of Object.entries(q.attributes || {})) {
    $("query-attrs").append(el("dt", { textContent: name }), el("dd", { textContent: value }));
  }
  renderTrail();
}

function renderTrail() {
  const trail = $("trail");
  trail.replaceChildren(el("span", { textContent: "previous queries" }));
  state.trail.forEach((q) => {
    trail.append(el("button", { type: "button", title: q.label, class: q === state.query ? "current" : "",
      onclick: () => setQuery(q, false) }, q.upload ? el("img", { src: q.previewUrl, alt: q.label }) :
      thumb(q.gallery_id)));
  });
  trail.hidden = state.trail.length < 2;
}

async function setQuery(query, remember = true) {
  if (query.upload && !query.accepted) {
    // An upload becomes the query only once the server has accepted it (type, size, pixels).
    try {
      await api("/api/search", { upload: query.upload, changes: {}, k: 1 });
      query.accepted = true;
    } catch (err) {
      showError(err.message);
      return;
    }
  }
  state.query = query;
  if (remember) {
    state.trail = state.trail.filter((q) => q !== query && (q.upload || q.gallery_id !== query.gallery_id));
    state.trail.push(query);
    if (state.trail.length > 12) state.trail.shift();
  }
  showError("");
  buildChanges();
  renderQuery();
  $("gallery-section").hidden = true;
  search();
}

async function search() {
  const q = state.query;
  if (!q) return;
  const wanted = changes();
  const body = { changes: wanted, k: Number($("k").value) };
  if (q.upload) body.upload = q.upload; else body.gallery_id = q.gallery_id;
  const ticket = ++state.pending;
  $("status").textContent = "searching…";
  try {
    const res = await api("/api/search", body);
    if (ticket !== state.pending) return;  // a newer search is on its way
    if (res.query.attributes && !q.attributes) { q.attributes = res.query.attributes; renderQuery(); }
    showError("");
    renderResults(res, wanted);
  } catch (err) {
    if (ticket !== state.pending) return;
    $("status").textContent = "";
    showError(err.message);
  }
}

function renderResults(res, wanted) {
  const grid = $("results");
  grid.replaceChildren(...res.results.map((r) => {
    const head = el("div", { class: "head" }, el("span", { class: "rank", textContent: "#" + r.rank }),
      el("span", { class: "dist", textContent: "d " + r.distance.toFixed(3) }));
    const hasChanges = Object.keys(wanted).length > 0;
    return tile(r, { head, wanted, match: hasChanges && r.matches }, () =>
      setQuery({ gallery_id: r.image_id, attributes: r.attributes, label: r.image_id }));
  }));
  const n = res.results.length;
  const hits = res.results.filter((r) => r.matches).length;
  const status = $("status");
  status.replaceChildren(n + " results in " + res.took_ms.toFixed(0) + " ms");
  if (Object.keys(wanted).length) {
    status.append(" · ", el("span", { class: "legend" }), " has every requested value (" + hits + " of " + n + ")");
  } else {
    status.append(" · no changes: visual search on the image's own features");
  }
  $("results-section").hidden = false;
}

async function loadGallery() {
  try {
    const res = await api("/api/gallery?n=24&seed=" + Math.floor(Math.random() * 1e9));
    $("gallery").replaceChildren(...res.items.map((item) => tile(item, {}, () =>
      setQuery({ gallery_id: item.image_id, attributes: item.attributes, label: item.image_id }))));
  } catch (err) { showError(err.message); }
}

function readUpload(event) {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  if (file.size > MAX_UPLOAD) {
    showError("image too large (" + (file.size / 1048576).toFixed(1) + " MB; the limit is 5 MB)");
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    const data = String(reader.result);
    setQuery({ upload: data.slice(data.indexOf(",") + 1), previewUrl: URL.createObjectURL(file),
      attributes: null, label: "uploaded: " + file.name });
  };
  reader.onerror = () => showError("could not read " + file.name);
  reader.readAsDataURL(file);
}

async function init() {
  $("upload").addEventListener("change", readUpload);
  $("browse").addEventListener("click", () => {
    $("gallery-section").hidden = false;
    $("gallery-section").scrollIntoView({ behavior: "smooth" });
  });
  $("shuffle").addEventListener("click", loadGallery);
  $("reset").addEventListener("click", () => {
    for (const s of document.querySelectorAll("#changes select")) s.value = "";
    search();
  });
  $("k").addEventListener("change", search);
  try {
    state.info = await api("/api/vocab");
  } catch (err) { showError(err.message); return; }
  const info = state.info;
  $("model-info").textContent = "model " + info.model + " (" + info.variant + ") · gallery of " +
    info.gallery_size + " images" + (info.has_images ? "" : " (no gallery images: upload a query)");
  buildChanges();
  if (info.has_images) {
    loadGallery();
  } else {
    $("gallery-section").hidden = true;
    $("browse").hidden = true;
    $("query-empty").textContent = "Upload a query image. (This server has no gallery images to browse: " +
      "start it with --gallery SPLIT for thumbnails.)";
  }
}

document.addEventListener("DOMContentLoaded", init);
"""
