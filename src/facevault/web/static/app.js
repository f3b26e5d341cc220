// facevault web UI. No build step, no dependencies: the page talks to /api/v1 with the API key the user
// signed in with (sessionStorage: it ends with the tab). All text from the server goes in as text nodes.
"use strict";

const PAGES = {
  search: { title: "Search", roles: ["admin", "searcher"] },
  verify: { title: "Verify", roles: ["admin", "searcher"] },
  subjects: { title: "Subjects", roles: ["admin", "enroller", "reviewer"] },
  audit: { title: "Audit", roles: ["admin", "auditor"] },
  review: { title: "Review", roles: ["admin", "reviewer"] },
  people: { title: "People", roles: ["admin", "enroller", "reviewer", "searcher"] },
  admin: { title: "Admin", roles: ["admin"] },
};
const CAN_ENROLL = ["admin", "enroller"];
const main = document.getElementById("main");

// ---- session -------------------------------------------------------------------------------------
const session = {
  get key() { return sessionStorage.getItem("fv.key"); },
  get me() { const raw = sessionStorage.getItem("fv.me"); return raw ? JSON.parse(raw) : null; },
  set(key, me) { sessionStorage.setItem("fv.key", key); sessionStorage.setItem("fv.me", JSON.stringify(me)); },
  clear() { sessionStorage.removeItem("fv.key"); sessionStorage.removeItem("fv.me"); },
  get collection() { return sessionStorage.getItem("fv.collection") || ""; },
  set collection(name) { sessionStorage.setItem("fv.collection", name); },
  get caseId() { return sessionStorage.getItem("fv.case") || ""; },
  get purpose() { return sessionStorage.getItem("fv.purpose") || ""; },
  set purpose(text) { sessionStorage.setItem("fv.purpose", text); },
  set caseId(id) { sessionStorage.setItem("fv.case", id); },
};
const role = () => (session.me ? session.me.role : null);
const allowed = (roles) => roles.includes(role());

// ---- DOM and HTTP helpers -------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message); this.status = status; this.code = code; this.requestId = requestId;
  }
}

async function api(path, { method = "GET", json, form, key } = {}) {
  const headers = { "X-API-Key": key || session.key || "" };
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  const res = await fetch(path, { method, headers, body });
  if (res.status === 401 && !key) { session.clear(); go("/signin"); }
  const type = res.headers.get("content-type") || "";
  const data = type.includes("application/json") ? await res.json() : await res.blob();
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(res.status, err.code || "error", err.message || res.statusText, err.request_id);
  }
  return data;
}

// The server's message in words; the code and request id stay available for support (title, data-).
function errorBox(err) {
  const text = String(err.message || err);
  const extra = err instanceof ApiError ? `error ${err.code}${err.requestId ? `, request ${err.requestId}` : ""}` : null;
  return h("div", { class: "error", role: "alert", title: extra, "data-code": err.code || null }, text);
}

function toast(text) {
  const el = document.getElementById("toast");
  el.textContent = text; el.classList.add("show");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => el.classList.remove("show"), 4000);
}

async function busy(button, work) {
  button.disabled = true;
  try { return await work(); } finally { button.disabled = false; }
}

const enc = encodeURIComponent;
const fmtFmr = (x) => (x === null || x === undefined ? "–" : Number(x).toExponential(1));
const fmtSim = (x) => Number(x).toFixed(3);
// A false-match rate in words: 4e-7 -> "about 1 in 2.5 million comparisons".
function fmrWords(x) {
  if (x === null || x === undefined || !(x > 0)) return "–";
  const n = 1 / Number(x);
  const round2 = (v) => Number(v.toPrecision(2));
  const words = n >= 1e9 ? `${round2(n / 1e9)} billion` : n >= 1e6 ? `${round2(n / 1e6)} million`
    : round2(n).toLocaleString("en");
  return `about 1 in ${words} comparisons`;
}
const THRESHOLD_HELP = "A similarity is a score between two faces, not a probability. The threshold is set from a " +
  "target false-match rate: how often two different people score that high. For a search it follows the gallery's " +
  "size (the rate per comparison is 1% divided by the number of enrolled photos, at most 1 in 1,000), so a person " +
  "who is not enrolled is wrongly matched about 1% of the time whatever the gallery size.";
function explain() {
  return h("details", { class: "explain" }, h("summary", {}, "What do similarity and false-match rate mean?"),
    h("p", {}, THRESHOLD_HELP));
}

// A thumbnail needs the key, so it is fetched and shown from a blob: URL.
function thumb(collection, subjectId, sampleId, alt) {
  const box = h("span", { class: "nothumb", text: "loading…" });
  api(`/api/v1/collections/${enc(collection)}/subjects/id:${subjectId}/samples/${sampleId}/thumbnail`)
    .then((blob) => box.replaceWith(h("img", { src: URL.createObjectURL(blob), alt })))
    .catch(() => { box.textContent = "photo not kept"; box.setAttribute("title", alt); });
  return box;
}

// ---- layout and routing ---------------------------------------------------------------------------
function go(path) { history.pushState({}, "", path); render(); }
let renderSeq = 0;
// Whether the page being drawn is still the one shown (the user may have moved on during an await).
const current = (seq) => main.dataset.render === seq;

function renderChrome(page) {
  const nav = document.getElementById("nav");
  nav.replaceChildren();
  const who = document.getElementById("who");
  who.replaceChildren();
  if (!session.me) return;
  for (const [name, p] of Object.entries(PAGES)) {
    if (!allowed(p.roles)) continue;
    const a = h("a", { href: `/${name}`, "aria-current": name === page ? "page" : null, text: p.title });
    a.addEventListener("click", (e) => { e.preventDefault(); go(`/${name}`); });
    nav.append(h("li", {}, a));
  }
  who.append(
    h("span", { "data-testid": "who" }, `${session.me.name} (${session.me.role})`),
    h("button", { type: "button", onclick: () => { session.clear(); go("/signin"); } }, "Sign out"),
  );
}

function firstPage() {
  const name = Object.keys(PAGES).find((n) => allowed(PAGES[n].roles));
  return name ? `/${name}` : "/signin";
}

function render() {
  let page = location.pathname.replace(/^\/+/, "").split("/")[0] || "search";
  if (!session.key && page !== "signin") { history.replaceState({}, "", "/signin"); page = "signin"; }
  if (page !== "signin" && !(page in PAGES)) {
    history.replaceState({}, "", firstPage());
    page = location.pathname.slice(1);
  }
  renderChrome(page);
  document.getElementById("toast").classList.remove("show");
  main.replaceChildren();
  main.dataset.render = String(++renderSeq);  // an async page drawn for an older render stops (see `current`)
  if (page === "signin") return signinPage();
  if (!allowed(PAGES[page].roles)) {
    document.title = "Not allowed · facevault";
    main.append(h("h1", {}, "Not allowed"),
      h("p", {}, `Your key's role (${role()}) cannot use the ${PAGES[page].title} page.`));
    return;
  }
  document.title = `${PAGES[page].title} · facevault`;
  ({ search: searchPage, verify: verifyPage, subjects: subjectsPage, audit: auditPage, review: reviewPage, admin: adminPage,
     people: () => peoplePage() })[page]();  // peoplePage: people.js
}

window.addEventListener("popstate", render);
document.addEventListener("DOMContentLoaded", render);

function heading(text) {
  const el = h("h1", { tabindex: "-1" }, text);
  setTimeout(() => el.focus(), 0);
  return el;
}

// A <select> of collections, remembering the choice for the tab.
async function collectionPicker(onChange) {
  const select = h("select", { id: "collection", name: "collection", required: true });
  const label = h("label", { for: "collection" }, "Collection", select);
  try {
    const rows = await api("/api/v1/collections");
    if (!rows.length) select.append(h("option", { value: "" }, "(no collections yet)"));
    for (const c of rows) select.append(h("option", { value: c.name }, `${c.name} (${plural(c.subjects, "subject")})`));
    if (rows.some((c) => c.name === session.collection)) select.value = session.collection;
    else if (rows.length) session.collection = rows[0].name;
  } catch (err) { label.append(errorBox(err)); }
  select.addEventListener("change", () => { session.collection = select.value; if (onChange) onChange(select.value); });
  return label;
}

// ---- sign in -------------------------------------------------------------------------------------
function signinPage() {
  document.title = "Sign in · facevault";
  const input = h("input", { type: "password", id: "apikey", name: "apikey", autocomplete: "off", required: true,
    "aria-describedby": "apikey-hint" });
  const status = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "stack panel", onsubmit: (e) => {
    e.preventDefault();
    busy(button, async () => {
      status.replaceChildren();
      try {
        const key = input.value.trim();
        const me = await api("/api/v1/login", { method: "POST", key });  // audited as one sign-in
        session.set(key, me);
        go(firstPage());
      } catch (err) { status.append(errorBox(err)); }
    });
  } },
  h("label", { for: "apikey" }, "API key", input),
  h("span", { id: "apikey-hint", class: "hint" },
    "Ask an admin for a key (facevault keys create --role ...). It is kept only in this browser tab."),
  button, status);
  main.append(heading("Sign in"), form);
}

// ---- search --------------------------------------------------------------------------------------
async function searchPage() {
  const seq = main.dataset.render;
  main.append(heading("Search"));
  const file = h("input", { type: "file", id: "photo", name: "photo", accept: "image/*", required: true });
  const drop = h("div", { class: "drop" },
    h("label", { for: "photo" }, "Photo to search with", file),
    h("span", { class: "hint" }, "Pick a file or drop a photo here."));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files.length) file.files = e.dataTransfer.files;
  });
  const purpose = h("input", { type: "text", id: "purpose", name: "purpose", required: true, maxlength: 500, value: session.purpose });
  const caseId = h("input", { type: "text", id: "case_id", name: "case_id", maxlength: 200, value: session.caseId,
    "aria-describedby": "case-hint" });
  const button = h("button", { type: "submit" }, "Search");
  const top = h("input", { type: "number", id: "top", name: "top", min: 1, max: role() === "admin" ? 1000 : 20, value: 5 });
  const fmr = h("select", { id: "fmr", name: "fmr" }, [["", "follow the gallery size (recommended)"], ["1e-3", "1 in 1,000"],
    ["1e-4", "1 in 10,000"], ["1e-5", "1 in 100,000"], ["1e-6", "1 in 1 million"]].map(([v, t]) => h("option", { value: v }, t)));
  const thr = h("input", { type: "number", id: "threshold", name: "threshold", min: -1, max: 1, step: 0.001, placeholder: "from the rate" });
  const advanced = h("details", { class: "advanced" }, h("summary", {}, "Options: candidates per face, false-match rate, threshold"),
    h("div", { class: "row" },
      h("label", { for: "top" }, "Candidates per face", top, h("span", { class: "hint" }, role() === "admin" ? "1 to 1000." : "1 to 20 for your role.")),
      h("label", { for: "fmr" }, "False-match rate per comparison", fmr),
      h("label", { for: "threshold" }, "Or a similarity threshold", thr, h("span", { class: "hint" }, "Overrides the rate when set."))),
    explain());
  const results = h("section", { "aria-live": "polite", "aria-label": "Search results", id: "results" });
  const picker = await collectionPicker();
  if (!current(seq)) return;
  const form = h("form", { class: "stack panel" },
    picker,
    drop,
    h("div", { class: "row" },
      h("label", { for: "purpose" }, "Purpose", purpose,
        h("span", { class: "hint" }, "Why this search is run. Recorded in the audit log.")),
      h("label", { for: "case_id" }, "Case id (optional)", caseId,
        h("span", { class: "hint", id: "case-hint" }, "With a case id, the candidates wait for two reviewers."))),
    advanced, h("div", {}, button));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!file.files.length) { results.replaceChildren(errorBox(new Error("Pick a photo first."))); return; }
    busy(button, async () => {
      results.replaceChildren(h("p", { class: "busy" }, "Finding the faces and searching the gallery…"));
      const data = new FormData();
      data.append("image", file.files[0]);
      data.append("purpose", purpose.value);
      session.purpose = purpose.value;
      if (caseId.value.trim()) { data.append("case_id", caseId.value.trim()); session.caseId = caseId.value.trim(); }
      if (top.value && top.value !== "5") data.append("top", top.value);
      if (thr.value.trim()) data.append("threshold", thr.value.trim()); else if (fmr.value) data.append("fmr", fmr.value);
      const collection = session.collection;
      try {
        const res = await api(`/api/v1/collections/${enc(collection)}/search`, { method: "POST", form: data });
        showResult(results, res, file.files[0]);
        if (res.case_id && res.matched) {
          const note = h("p", { class: "meta" }, "These are candidates, not identifications: ");
          if (allowed(PAGES.review.roles)) {
            const link = h("a", { href: "/review", text: `review case ${res.case_id}` });
            link.addEventListener("click", (e) => { e.preventDefault(); go("/review"); });
            note.append(link, ".");
          } else note.append(`two reviewers must confirm them under case ${res.case_id}.`);
          results.append(note);
        }
      } catch (err) {
        results.replaceChildren(err.code === "no_face"
          ? h("div", { class: "nomatch", role: "alert" }, h("strong", {}, "No face found"),
            "No face was detected in this photo. Try a sharper, frontal photo.")
          : errorBox(err));
      }
    });
  });
  main.append(form, results);
}

// Faces left to right, each named by its best match (or "no match"), as in the API's summary.
function faceLabels(res) {
  return res.faces.map((f, i) => ({ f, i })).sort((a, b) => a.f.box[0] - b.f.box[0] || a.f.box[1] - b.f.box[1])
    .map(({ f, i }, pos) => {
      const best = f.candidates && f.candidates[0];
      const kind = !f.searched ? "not_searched" : best ? "match" : "no_match";
      const label = kind === "match" ? `${best.name} ${fmtSim(best.similarity)}` : kind === "no_match" ? "no match" : "not searched (too small)";
      return { face: f, index: i, position: pos + 1, kind, label };
    });
}

function summaryLine(labels) {
  if (!labels.length) return "no face found";
  return `${plural(labels.length, "face")}: ${labels.map((l) => l.label).join("; ")}`;
}

const BOX_COLOURS = { match: "#1f9d55", no_match: "#ffb000", not_searched: "#969696" };

// The probe with labelled boxes, drawn here from the local file (no second search, no upload).
function downloadAnnotated(img, labels, button) {
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0);
  const side = Math.max(canvas.width, canvas.height);
  const lw = Math.max(2, Math.round(side / 300)), fs = Math.max(12, Math.round(side / 45));
  g.font = `bold ${fs}px sans-serif`; g.textBaseline = "top";
  for (const l of labels) {
    const [x1, y1, x2, y2] = l.face.box;
    g.strokeStyle = BOX_COLOURS[l.kind]; g.lineWidth = lw; g.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${l.position}. ${l.label}`, tw = g.measureText(text).width + 2 * lw, th = fs + 2 * lw;
    const top = y1 - th >= 0 ? y1 - th : Math.min(y2, canvas.height - th);
    const left = Math.min(Math.max(0, x1), Math.max(0, canvas.width - tw));
    g.fillStyle = BOX_COLOURS[l.kind]; g.fillRect(left, top, tw, th);
    g.fillStyle = "#000"; g.fillText(text, left + lw, top + lw);
  }
  canvas.toBlob((blob) => {
    const a = h("a", { href: URL.createObjectURL(blob), download: "search-annotated.jpg" });
    document.body.append(a); a.click(); a.remove();
    toast("Annotated photo downloaded.");
  }, "image/jpeg", 0.9);
  button.blur();
}

function showResult(results, res, photo) {
  const img = h("img", { src: URL.createObjectURL(photo), alt: "The photo searched with" });
  const figure = h("div", { class: "probe" }, img);
  const candidates = h("div", { id: "candidates" });
  const labels = faceLabels(res);
  const buttons = [];
  const select = (pos) => {
    buttons.forEach((b) => b.setAttribute("aria-pressed", String(Number(b.dataset.pos) === pos)));
    const l = labels[pos - 1];
    candidates.replaceChildren(faceCandidates(res, l.face, l.position));
  };
  const list = h("ul", { class: "facelist", "aria-label": "Faces, left to right" });
  for (const l of labels) {
    const b = h("button", { type: "button", class: l.kind, "aria-pressed": "false", "data-pos": l.position,
      "data-testid": "face-label", onclick: () => select(l.position) }, `${l.position}. ${l.label}`);
    buttons.push(b); list.append(h("li", {}, b));
  }
  img.addEventListener("load", () => {
    const W = img.naturalWidth, H = img.naturalHeight;
    for (const l of labels) {
      const [x1, y1, x2, y2] = l.face.box;
      const side = (x1 + x2) / 2 > W / 2 ? " right" : "";  // labels grow inwards: none sticks out of the photo
      const b = h("button", { type: "button", class: `facebox ${l.kind}${side}`, "aria-pressed": "false", "data-pos": l.position,
        "aria-label": `Face ${l.position} (${l.label}): show its candidates`, onclick: () => select(l.position) },
        h("span", {}, `${l.position}. ${l.label}`));
      Object.assign(b.style, { left: `${(100 * x1) / W}%`, top: `${(100 * y1) / H}%`,
        width: `${(100 * (x2 - x1)) / W}%`, height: `${(100 * (y2 - y1)) / H}%` });
      buttons.push(b); figure.append(b);
    }
    if (labels.length) select(1);
  });
  const download = h("button", { type: "button", class: "secondary", onclick: (e) => downloadAnnotated(img, labels, e.currentTarget) },
    "Download the photo with names");
  results.replaceChildren(
    h("h2", {}, `${plural(res.faces.length, "face")} found`),
    h("p", { class: "summary", "data-testid": "summary" }, summaryLine(labels)),
    h("p", { class: "meta" },
      `A match needs similarity ≥ ${fmtSim(res.threshold)}: two different people score that high ${fmrWords(res.threshold_fmr)}` +
      ` (${fmtFmr(res.threshold_fmr)}). Request ${res.request_id}, audit entry #${res.audit_seq}.`), explain(),
    h("div", { class: "grid2" }, h("div", {}, figure, list,
      h("p", { class: "hint" }, "Green: a match; amber: nobody in this gallery. Pick a face to see its candidates."),
      download), candidates));
}

function faceCandidates(res, face, position) {
  const title = h("h2", {}, `Face ${position} (from the left)`);
  if (!face.searched) {
    return h("div", {}, title, h("div", { class: "nomatch" }, h("strong", {}, "Not searched"),
      `This face is too small to search reliably (${face.skipped_reason}).`));
  }
  if (!face.candidates.length) {
    return h("div", {}, title, h("div", { class: "nomatch", "data-testid": "no-match" },
      h("strong", {}, "No match in this gallery"),
      `Nobody in “${res.collection}” matches this face at similarity ≥ ${fmtSim(res.threshold)}. ` +
      "Try a sharper, more frontal photo, or enroll this person with their consent first."));
  }
  const list = h("ol", { class: "candidates", "aria-label": "Candidates, best first" });
  face.candidates.forEach((c, rank) => {
    list.append(h("li", { class: "candidate", "data-testid": "candidate" },
      h("span", { class: "name" }, `${rank + 1}. ${c.name}`, c.external_id ? ` (${c.external_id})` : ""),
      h("span", {}, `Similarity ${fmtSim(c.similarity)}: different people score this high ${fmrWords(c.estimated_fmr)}`),
      h("div", { class: "thumbs" }, c.samples.slice(0, 4).map((s) =>
        thumb(res.collection, c.subject_id, s.sample_id, `Enrolled photo of ${c.name} (sample ${s.sample_id})`)))));
  });
  return h("div", {}, title, list);
}

// ---- verify (1:1) --------------------------------------------------------------------------------
function verifyPage() {
  main.append(heading("Verify two photos"));
  const pick = (id, text) => {
    const input = h("input", { type: "file", id, name: id, accept: "image/*", required: true });
    return [h("label", { for: id }, text, input), input];
  };
  const [aL, a] = pick("photo-a", "First photo");
  const [bL, b] = pick("photo-b", "Second photo");
  const purpose = h("input", { type: "text", id: "verify-purpose", name: "purpose", required: true, maxlength: 500, value: session.purpose });
  const button = h("button", { type: "submit" }, "Compare the faces");
  const out = h("section", { id: "verify-result", "aria-live": "polite", "aria-label": "Comparison" });
  const form = h("form", { class: "stack panel" },
    h("p", { class: "meta" }, "Do two photos show the same person? Each photo should show one face (the largest is used). " +
      "Nothing is stored; the comparison is recorded in the audit log with its purpose."),
    h("div", { class: "grid2" }, aL, bL),
    h("label", { for: "verify-purpose" }, "Purpose", purpose, h("span", { class: "hint" }, "Why the comparison is made. Recorded in the audit log.")),
    h("div", {}, button));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!a.files.length || !b.files.length) { out.replaceChildren(errorBox(new Error("Pick two photos first."))); return; }
    busy(button, async () => {
      out.replaceChildren(h("p", { class: "busy" }, "Finding and comparing the faces…"));
      const data = new FormData();
      data.append("image_a", a.files[0]); data.append("image_b", b.files[0]); data.append("purpose", purpose.value);
      session.purpose = purpose.value;
      try {
        const res = await api("/api/v1/verify", { method: "POST", form: data });
        const faces = await Promise.all([faceFromFile(a.files[0], res.face_a.box), faceFromFile(b.files[0], res.face_b.box)]);
        out.replaceChildren(
          h("div", { class: "pair", "data-testid": "verify-faces" },
            h("figure", {}, faces[0], h("figcaption", {}, a.files[0].name)),
            h("figure", {}, faces[1], h("figcaption", {}, b.files[0].name))),
          h("p", { class: res.same_person ? "okay" : "nomatch", "data-testid": "verify-verdict" },
            h("strong", {}, res.same_person ? "Same person" : "Not the same person"),
            ` Similarity ${fmtSim(res.similarity)}; the threshold is ${fmtSim(res.threshold)}, where two different people ` +
            `score that high ${fmrWords(res.threshold_fmr)}. ` +
            (res.same_person ? `Different people score ${fmtSim(res.similarity)} or more ${fmrWords(res.estimated_fmr)}.`
              : "Below the threshold: these faces are not shown to be the same person.")),
          h("p", { class: "meta" }, `Audit entry #${res.audit_seq} · model ${res.model_id}.`), explain());
      } catch (err) {
        out.replaceChildren(err.code === "no_face" ? h("div", { class: "nomatch", role: "alert" }, h("strong", {}, "No face found"),
          "One of the photos shows no face the detector can find. Try a sharper, frontal photo.") : errorBox(err));
      }
    });
  });
  main.append(form, out);
}

// The face at `box` of a local photo, cut out in the browser (nothing is uploaded again).
function faceFromFile(file, box) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      const [x1, y1, x2, y2] = box, pad = 0.3 * Math.max(x2 - x1, y2 - y1);
      const sx = Math.max(0, x1 - pad), sy = Math.max(0, y1 - pad);
      const sw = Math.min(img.naturalWidth, x2 + pad) - sx, sh = Math.min(img.naturalHeight, y2 + pad) - sy;
      const c = document.createElement("canvas"); c.width = 240; c.height = Math.round(240 * sh / sw);
      c.getContext("2d").drawImage(img, sx, sy, sw, sh, 0, 0, c.width, c.height);
      resolve(h("img", { src: c.toDataURL("image/jpeg", 0.9), alt: `The face found in ${file.name}`, class: "face big" }));
    };
    img.src = URL.createObjectURL(file);
  });
}

// ---- subjects ------------------------------------------------------------------------------------
async function subjectsPage() {
  const seq = main.dataset.render;
  main.append(heading("Subjects"));
  const listArea = h("section", { "aria-label": "Subject list" });
  const detail = h("section", { id: "subject-detail", "aria-live": "polite" });
  const filter = h("input", { type: "search", id: "filter", name: "filter", placeholder: "Name or external id" });
  let rows = [];
  const drawList = () => {
    const needle = filter.value.trim().toLowerCase();
    const shown = rows.filter((r) => !needle || r.name.toLowerCase().includes(needle) || (r.external_id || "") === filter.value.trim());
    const ul = h("ul", { class: "subject-list" });
    for (const r of shown) {
      ul.append(h("li", {}, h("button", { type: "button", onclick: () => openSubject(r.id) },
        `${r.name}${r.external_id ? ` (${r.external_id})` : ""} · ${r.samples} sample${r.samples === 1 ? "" : "s"}`)));
    }
    listArea.replaceChildren(h("h2", {}, `${shown.length} of ${rows.length} subjects`),
      shown.length ? ul : h("p", {}, rows.length ? "No subjects match. Clear the search box to see everyone."
        : "No subjects yet. Add a person with their consent (above), then enroll their photos."));
  };
  const load = async () => {
    if (!session.collection) { listArea.replaceChildren(h("p", {}, "No collection yet.")); return; }
    try {
      rows = await api(`/api/v1/collections/${enc(session.collection)}/subjects`); drawList();
      const opt = document.querySelector(`#collection option[value="${CSS.escape(session.collection)}"]`);
      if (opt) opt.textContent = `${session.collection} (${plural(rows.length, "subject")})`;
    }
    catch (err) { listArea.replaceChildren(errorBox(err)); }
  };
  const openSubject = async (id) => {
    await showSubject(detail, id, load);
    detail.scrollIntoView({ block: "start" });  // on a phone the details are below the list
  };
  filter.addEventListener("input", drawList);
  const picker = await collectionPicker(() => { detail.replaceChildren(); load(); });
  if (!current(seq)) return;
  const tools = h("div", { class: "stack panel" }, picker, h("label", { for: "filter" }, "Find a subject", filter));
  main.append(tools);
  if (role() === "admin") main.append(newCollectionForm());
  if (allowed(CAN_ENROLL)) main.append(newSubjectForm(openSubject, load, () => rows));
  main.append(h("div", { class: "grid2" }, listArea, detail));
  await load();
}

function newCollectionForm() {
  const name = h("input", { type: "text", id: "new-collection", name: "name", required: true, maxlength: 200 });
  const model = h("input", { type: "text", id: "new-collection-model", name: "model", maxlength: 100, placeholder: "dlib-resnet-v1" });
  const keep = h("input", { type: "checkbox", id: "keep-crops", name: "keep_crops" });
  const button = h("button", { type: "submit" }, "Create collection");
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "stack" }, h("label", { for: "new-collection" }, "Collection name", name),
    h("label", { for: "new-collection-model" }, "Model pack (optional)", model,
      h("span", { class: "hint" }, "Empty: the default. A collection stays pinned to its pack.")),
    h("label", { class: "check", for: "keep-crops" }, keep,
      "Keep encrypted face crops (needed to move to another model pack later; off keeps no face images)"),
    h("div", {}, button), status);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(button, async () => {
      try {
        const body = { name: name.value, keep_crops: keep.checked };
        if (model.value.trim()) body.model = model.value.trim();
        await api("/api/v1/collections", { method: "POST", json: body });
        session.collection = name.value.trim();
        render();
        toast(`Collection ${name.value} created`);
      } catch (err) { status.replaceChildren(errorBox(err)); }
    });
  });
  return h("details", { class: "panel" }, h("summary", {}, "New collection"), form);
}

function newSubjectForm(openSubject, reload, rows = () => []) {
  const field = (id, label, attrs = {}, hint) => {
    const input = h("input", { type: "text", id, name: id, ...attrs });
    return [h("label", { for: id }, label, input, hint ? h("span", { class: "hint" }, hint) : null), input];
  };
  const [nameL, name] = field("subject-name", "Name", { required: true, maxlength: 200 });
  const [purposeL, purpose] = field("consent-purpose", "Consent purpose", { required: true, maxlength: 500 },
    "What the person agreed their face may be used for.");
  const text = h("textarea", { id: "consent-text", name: "consent_text", rows: 3 });
  const file = h("input", { type: "file", id: "consent-file", name: "consent_file" });
  const [byL, by] = field("consent-by", "Consent given by", { required: true, maxlength: 200 },
    "The person themselves, or who signed for them (e.g. a parent).");
  const [expL, expires] = field("consent-expires", "Consent expires (optional)", { type: "date" });
  const [extL, ext] = field("external-id", "External id (optional)", { maxlength: 200 });
  const button = h("button", { type: "submit" }, "Add subject");
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "stack" }, nameL, purposeL,
    h("label", { for: "consent-text" }, "Consent text", text,
      h("span", { class: "hint" }, "Or attach the signed form below instead (one of the two).")),
    h("label", { for: "consent-file" }, "Consent document", file),
    h("div", { class: "row" }, byL, expL, extL), h("div", {}, button), status);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(button, async () => {
      const data = new FormData();
      data.append("name", name.value); data.append("purpose", purpose.value);
      if (file.files.length) data.append("consent_file", file.files[0]); else data.append("consent_text", text.value);
      data.append("consent_by", by.value.trim());
      if (expires.value) data.append("expires", expires.value);
      if (ext.value) data.append("external_id", ext.value);
      try {
        const subj = await api(`/api/v1/collections/${enc(session.collection)}/subjects`, { method: "POST", form: data });
        const keptPurpose = purpose.value;
        form.reset(); purpose.value = keptPurpose; status.replaceChildren();
        toast(`Added ${subj.name}. The form stays open for the next person.`);
        if (!ext.value && rows().some((r) => r.name === subj.name && r.id !== subj.id)) toast(`Added ${subj.name}: another subject has this name; give each an external id to tell them apart.`);
        await reload(); openSubject(subj.id);
      } catch (err) { status.replaceChildren(errorBox(err)); }
    });
  });
  return h("details", { class: "panel" }, h("summary", {}, "Add a subject (with consent)"), form);
}

async function showSubject(detail, id, reload) {
  const collection = session.collection;
  const base = `/api/v1/collections/${enc(collection)}/subjects/id:${id}`;
  let s;
  try { s = await api(base); } catch (err) { detail.replaceChildren(errorBox(err)); return; }
  const c = s.consent;
  const record = h("dl", { class: "record" },
    ...[["Purpose", c.purpose], ["Given by", c.granted_by], ["Given at", `${when(c.granted_at)} UTC`],
      ["Expires", c.expires_at ? when(c.expires_at) : "never"], ["Withdrawn", c.withdrawn_at ? when(c.withdrawn_at) : "no"], ["Evidence", `${c.evidence_kind}${c.evidence_name ? `: ${c.evidence_name}` : ""}`],
      ["Evidence SHA-256", c.evidence_sha256]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  const refresh = () => showSubject(detail, id, reload);
  const samples = h("div", { class: "thumbs samples", "data-testid": "samples" }, s.samples.map((x) =>
    h("figure", { class: "sample", "data-testid": "sample" },
      thumb(collection, s.id, x.sample_id, `Sample ${x.sample_id} of ${s.name}`),
      h("figcaption", {}, `#${x.sample_id}`, x.original_name
        ? h("span", { class: "filename", title: x.original_name, "data-testid": "sample-name" }, x.original_name) : null),
      allowed(CAN_ENROLL) ? sampleActions(base, s, x, refresh, reload) : null)));
  detail.replaceChildren(h("h2", { tabindex: "-1", id: "subject-title" }, s.name),
    h("p", { class: "meta" }, `Subject #${s.id}${s.external_id ? ` · external id ${s.external_id}` : ""} · created ${when(s.created_at)} UTC`),
    h("h3", {}, "Consent record"), record,
    h("h3", {}, `Samples (${s.samples.length})`), s.samples.length ? samples
      : h("p", {}, "No samples yet. Enroll a few clear, frontal photos of this person below."));
  if (allowed(CAN_ENROLL)) {
    detail.append(enrollForm(base, refresh, reload),
      h("div", { class: "stack" }, h("h3", {}, "Withdraw consent or erase"),
        h("div", { class: "row buttons" }, withdrawButton(base, s, detail, reload), eraseButton(base, s, detail, reload))));
  }
  document.getElementById("subject-title").focus();
}

// Delete one wrong sample (with an erasure receipt) or move it to the subject it really shows.
function sampleActions(base, s, x, refresh, reload) {
  const status = h("span", { class: "meta", "aria-live": "polite" });
  const del = h("button", { type: "button", class: "danger small", "aria-label": `Delete sample ${x.sample_id}`,
    onclick: () => { dialog.returnValue = ""; dialog.showModal(); } }, "Delete…");
  const dialog = h("dialog", { "aria-labelledby": `del-${x.sample_id}-title` },
    h("h2", { id: `del-${x.sample_id}-title` }, `Delete sample #${x.sample_id} of ${s.name}?`),
    h("p", {}, "The photo's template, face crop and kept copy are erased; the subject and the other samples stay. " +
      "The audit log keeps an erasure receipt."),
    h("form", { method: "dialog", class: "row" },
      h("button", { type: "submit", value: "cancel", class: "secondary" }, "Cancel"),
      h("button", { type: "submit", value: "go", class: "danger" }, "Delete sample")));
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "go") return;
    try {
      const r = await api(`${base}/samples/${x.sample_id}`, { method: "DELETE" });
      toast(`Sample #${x.sample_id} erased (receipt: audit entry #${r.audit_seq}).`);
      await refresh(); await reload();
    } catch (err) { status.replaceChildren(errorBox(err)); }
  });
  const move = h("button", { type: "button", class: "secondary small", "aria-label": `Move sample ${x.sample_id}`,
    onclick: async () => {
      const others = (await api(`/api/v1/collections/${enc(session.collection)}/subjects`)).filter((o) => o.id !== s.id);
      if (!others.length) { status.textContent = "No other subject to move it to."; return; }
      const select = h("select", { id: `move-${x.sample_id}`, "aria-label": `Move sample ${x.sample_id} to` },
        others.map((o) => h("option", { value: o.id }, `${o.name}${o.external_id ? ` (${o.external_id})` : ""}`)));
      const go = h("button", { type: "button", class: "small", onclick: async () => {
        try {
          const r = await api(`${base}/samples/${x.sample_id}/move`, { method: "POST", json: { to: `id:${select.value}` } });
          toast(`Sample #${x.sample_id} moved to ${r.to_name}.`);
          await refresh(); await reload();
        } catch (err) { status.replaceChildren(errorBox(err)); }
      } }, "Move");
      status.replaceChildren(select, go);
    } }, "Move…");
  return h("div", { class: "sample-actions" }, del, move, dialog, status);
}

// What an enrollment outcome says, in words (the code stays in the title for support).
const REASONS = {
  resembles_another_subject: "Looks like someone else", identity_conflict: "Another person's face",
  no_face: "No face found", multiple_faces: "Several faces", duplicate_image: "Already enrolled",
  face_too_small: "Face too small", low_quality: "Too blurry", extreme_pose: "Face turned away",
  blocked_by_optout: "Opted out", file_too_large: "File too large", unsupported_format: "Not an image",
};

function enrollForm(base, refresh, reload) {
  const files = h("input", { type: "file", id: "enroll-files", name: "images", accept: "image/*", multiple: true, required: true });
  const largest = h("input", { type: "checkbox", id: "largest", name: "largest" });
  const button = h("button", { type: "submit" }, "Enroll photos");
  const out = h("div", { id: "enroll-results", "aria-live": "polite" });
  const form = h("form", { class: "stack panel" }, h("h3", {}, "Enroll more photos"),
    h("label", { for: "enroll-files" }, "Photos of this person (one face each)", files),
    h("label", { class: "check", for: "largest" }, largest, "Use the largest face when a photo shows several"),
    h("div", {}, button), out);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(button, async () => {
      const chosen = [...files.files];
      const res = await uploadEach(base, chosen, { largest: largest.checked }, out);
      if (!res) return;
      await refresh(); await reload();
      showOutcomes(res, chosen, base, largest.checked, refresh, reload);
    });
  });
  return form;
}

const mb = (n) => `${(n / 1048576).toFixed(n < 1048576 ? 2 : 1)} MB`;
let LIMITS = null;
async function limits() {
  if (!LIMITS) LIMITS = await fetch("/ui/limits").then((r) => r.json()).catch(() => ({ max_upload_bytes: 10485760 }));
  return LIMITS;
}

// Enroll photos one request each, with a progress bar; a file over the server's size limit is refused
// here, before it is sent. Returns the merged answer ({enrolled, rejected, outcomes}) or null on error.
async function uploadEach(base, chosen, { largest = false, anyway = false } = {}, out) {
  const { max_upload_bytes: limit } = await limits();
  const bar = h("progress", { max: chosen.length, value: 0, "aria-label": "Photos enrolled so far" });
  const line = h("p", { class: "busy", "data-testid": "enroll-progress" }, "Starting…");
  out.replaceChildren(line, bar);
  const outcomes = [];
  for (const [i, f] of chosen.entries()) {
    line.textContent = `Enrolling photo ${i + 1} of ${chosen.length}: ${f.name} (finding the face, checking it, storing it)…`;
    if (f.size > limit) {
      outcomes.push({ image: f.name, status: "rejected", reason: "file_too_large",
        message: `${mb(f.size)} is over the server's ${mb(limit)} limit; not sent. Use a smaller copy of the photo.` });
    } else {
      const data = new FormData();
      data.append("images", f);
      if (largest) data.append("largest", "true");
      try {
        const res = await api(`${base}/samples${anyway ? "?anyway=true" : ""}`, { method: "POST", form: data });
        outcomes.push(...res.outcomes);
      } catch (err) { out.replaceChildren(errorBox(err)); return null; }
    }
    bar.value = i + 1;
  }
  const enrolled = outcomes.filter((o) => o.status === "enrolled").length;
  return { enrolled, rejected: outcomes.length - enrolled, outcomes };
}

// The outcome per photo; photos that resemble another subject can be enrolled anyway, explicitly.
function showOutcomes(res, chosen, base, largest, refresh, reload) {
  const out = document.getElementById("enroll-results");
  if (!out) return;
  const warned = res.outcomes.map((o, i) => [o, chosen[i]]).filter(([o]) => o.reason === "resembles_another_subject");
  const table = h("table", { class: "cards" }, h("caption", { class: "visually-hidden" }, "Outcome per photo"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Photo"), h("th", { scope: "col" }, "Outcome"),
      h("th", { scope: "col" }, "Details"))),
    h("tbody", {}, res.outcomes.map((o) => h("tr", { class: o.reason === "resembles_another_subject" ? "warn" : "" },
      h("td", { "data-label": "Photo", class: "filename" }, o.original_name || o.image),
      h("td", { class: `status-${o.status}`, title: o.reason || "", "data-label": "Outcome" }, o.status === "enrolled" ? "enrolled"
        : (REASONS[o.reason] || o.reason || "rejected")),
      h("td", { "data-label": "Details" }, o.status === "enrolled" ? `sample #${o.sample_id}${o.message ? ` · ${o.message}` : ""}`
        : o.reason === "multiple_faces" ? `${o.message.split(";")[0]}. Tick “Use the largest face” and enroll it again.` : (o.message || ""))))));
  const summary = h("p", { class: res.rejected ? (warned.length === res.rejected ? "warning" : "error") : "okay" },
    `${res.enrolled} enrolled, ${res.rejected} rejected.`);
  out.replaceChildren(summary, h("div", { class: "tablewrap" }, table));
  if (warned.length) {
    const anyway = h("button", { type: "button", class: "danger", "data-testid": "enroll-anyway", onclick: (e) => busy(e.currentTarget, async () => {
      const again = await uploadEach(base, warned.map(([, f]) => f), { largest, anyway: true }, out);
      if (!again) return;
      await refresh(); await reload();
      showOutcomes(again, warned.map(([, f]) => f), base, largest, refresh, reload);
    }) }, `Enroll anyway (${plural(warned.length, "photo")})`);
    out.append(h("div", { class: "warning", role: "alert" },
      h("strong", {}, "Check these photos: they look like another person in this collection."),
      h("p", {}, "Enroll them only if you are sure they show this person; a wrong photo makes searches name the wrong person."),
      anyway));
  }
}

// A destructive action behind a confirmation dialog; `run` does it and returns the message to show.
function confirmButton({ id, label, title, text, confirm, run }, detail, reload) {
  const dialog = h("dialog", { "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title), h("p", {}, text),
    h("form", { method: "dialog", class: "row" },
      h("button", { type: "submit", value: "cancel", class: "secondary" }, "Cancel"),
      h("button", { type: "submit", value: "go", class: "danger" }, confirm)));
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "go") return;
    try {
      detail.replaceChildren(h("p", { class: "okay", role: "status" }, await run()));
      await reload();
    } catch (err) { detail.append(errorBox(err)); }
  });
  const open = h("button", { type: "button", class: "danger", onclick: () => { dialog.returnValue = ""; dialog.showModal(); } }, label);
  return h("div", {}, open, dialog);
}

function eraseButton(base, s, detail, reload) {
  return confirmButton({ id: "erase", label: "Erase subject…", title: `Erase ${s.name}?`, confirm: "Erase permanently",
    text: `This deletes ${plural(s.samples.length, "sample")}, their kept photos and the consent record. It cannot be undone. ` +
      "The audit log keeps a record that the erasure happened.",
    run: async () => {
      const res = await api(base, { method: "DELETE" });
      return `Erased ${res.name}: ${plural(res.samples_removed, "sample")} removed.`;
    } }, detail, reload);
}

function withdrawButton(base, s, detail, reload) {
  return confirmButton({ id: "withdraw", label: "Withdraw consent…", title: `Withdraw ${s.name}'s consent?`,
    confirm: "Withdraw and erase",
    text: `Withdrawing consent erases ${s.name}'s ${plural(s.samples.length, "sample")}, kept photos and face data at once. ` +
      "It cannot be undone. The audit log records the withdrawal and the erasure receipt.",
    run: async () => {
      const res = await api(`${base}/consent/withdraw`, { method: "POST" });
      return `Consent withdrawn for ${res.name}: ${plural(res.samples_removed, "sample")} erased.`;
    } }, detail, reload);
}

// ---- audit ---------------------------------------------------------------------------------------
async function auditPage() {
  main.append(heading("Audit log"));
  const chain = h("div", { id: "chain", "aria-live": "polite" }, "Checking the hash chain…");
  const action = h("select", { id: "f-action", name: "action" },
    ["", "search", "verify", "enroll", "subject.add", "subject.erase", "consent.withdraw", "optout", "review",
      "retention.sweep", "retention.set", "collection.create", "collection.delete", "keys.rotate", "audit.export",
      "apikey.create", "apikey.revoke", "login"]
      .map((a) => h("option", { value: a }, a || "any")));
  const text = (id) => h("input", { type: "text", id, name: id, maxlength: 200 });
  const actor = text("f-actor"), coll = text("f-collection"), caseId = text("f-case"), req = text("f-request");
  const limit = h("input", { type: "number", id: "f-limit", name: "limit", min: 1, max: 1000, value: 100 });
  const since = h("input", { type: "date", id: "f-since", name: "since" });
  const until = h("input", { type: "date", id: "f-until", name: "until" });
  const button = h("button", { type: "submit" }, "Show entries");
  const showLogins = h("input", { type: "checkbox", id: "f-logins", name: "logins" });
  // Pages of `limit` entries, newest first: each older page starts below the oldest entry shown (its
  // seq, and its time rounded up to the second so the server finds it fast); `pages` keeps the way back.
  let pages = [null];
  // until is a date, inclusive on screen: the API takes the next midnight (exclusive)
  const untilParam = () => {
    if (!until.value) return "";
    const d = new Date(`${until.value}T00:00:00Z`); d.setUTCDate(d.getUTCDate() + 1);
    return d.toISOString().slice(0, 10);
  };
  const out = h("section", { "aria-live": "polite", "aria-label": "Audit entries" });
  const form = h("form", { class: "stack panel" }, h("div", { class: "row" },
    h("label", { for: "f-action" }, "Action", action), h("label", { for: "f-actor" }, "Actor (exact, e.g. key:1a2b3c4d)", actor),
    h("label", { for: "f-collection" }, "Collection", coll), h("label", { for: "f-case" }, "Case id", caseId),
    h("label", { for: "f-request" }, "Request id", req), h("label", { for: "f-since" }, "From (UTC date)", since),
    h("label", { for: "f-until" }, "To (UTC date, inclusive)", until), h("label", { for: "f-limit" }, "Entries per page", limit)),
  h("label", { class: "check", for: "f-logins" }, showLogins, "Show sign-ins"),
  h("div", { class: "row buttons" }, button,
    h("button", { type: "button", class: "secondary", onclick: (e) => exportLog(e.currentTarget, "jsonl") }, "Export JSON Lines"),
    h("button", { type: "button", class: "secondary", onclick: (e) => exportLog(e.currentTarget, "csv") }, "Export CSV")));
  // The export endpoint takes the dates; the other on-screen filters are applied to the (audited) export here.
  const filters = () => [["action", action], ["actor", actor], ["collection", coll], ["case_id", caseId], ["request_id", req]]
    .map(([k, el]) => [k, el.value.trim()]).filter(([, v]) => v);
  const keep = (entry) => filters().every(([k, v]) => String(k === "request_id" ? (entry.details || {}).request_id ?? entry.request_id : entry[k]) === v)
    && (showLogins.checked || entry.action !== "login" || action.value === "login");
  const exportLog = (btn, format) => busy(btn, async () => {
    const q = new URLSearchParams({ format });
    if (since.value) q.set("since", since.value);
    if (untilParam()) q.set("until", untilParam());
    try {
      let blob = await api(`/api/v1/audit/export?${q}`);
      if (filters().length || !showLogins.checked) blob = await filterExport(blob, format, keep);
      const a = h("a", { href: URL.createObjectURL(blob), download: `facevault-audit.${format}` });
      document.body.append(a); a.click(); a.remove();
      toast(`Audit log exported (${format}, with the filters on screen); the export is itself recorded.`);
    } catch (err) { out.replaceChildren(errorBox(err)); }
  });
  const load = (page = 0) => busy(button, async () => {
    if (page === 0) pages = [null];
    const size = Math.min(1000, Math.max(1, Number(limit.value || "100")));
    const q = new URLSearchParams({ limit: String(size) });
    for (const [k, v] of filters()) q.set(k, v);
    if (since.value) q.set("since", since.value);
    const cursor = pages[page];
    const upTo = [untilParam() ? `${untilParam()}T00:00:00Z` : null, cursor ? cursor.until : null].filter(Boolean).sort()[0];
    if (upTo) q.set("until", upTo);
    if (cursor) q.set("before", String(cursor.seq));
    try {
      const all = await api(`/api/v1/audit?${q}`);
      const rows = all.filter(keep);
      const hidden = all.length - rows.length;
      const table = h("table", { class: "cards" }, h("caption", { class: "visually-hidden" }, "Audit entries, newest first"),
        h("thead", {}, h("tr", {}, ["#", "Time (UTC)", "Action", "Who", "Purpose", "Case", "Collection", "Details"]
          .map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows.map((e) => h("tr", {},
          h("td", { "data-label": "#" }, e.seq), h("td", { "data-label": "Time" }, e.at.replace("T", " ").slice(0, 19)),
          h("td", { "data-label": "Action" }, e.action), h("td", { "data-label": "Who" }, e.actor_name ? `${e.actor_name} (${e.actor})` : e.actor),
          h("td", { "data-label": "Purpose" }, e.purpose || ""), h("td", { "data-label": "Case" }, e.case_id || ""),
          h("td", { "data-label": "Collection" }, e.collection || ""), h("td", { class: "details", "data-label": "Details" }, detailList(e))))));
      const oldest = all[all.length - 1];
      if (oldest && all.length >= size) {
        const next = new Date(Date.parse(oldest.at) + 1000); next.setUTCMilliseconds(0);
        pages[page + 1] = { seq: oldest.seq, until: next.toISOString().replace(".000Z", "Z") };
      } else pages.length = page + 1;
      const nav = h("nav", { class: "row buttons pager", "aria-label": "Audit pages" },
        page > 0 ? h("button", { type: "button", class: "secondary", onclick: () => load(page - 1) }, "← Newer entries") : null,
        h("span", { class: "meta", "data-testid": "audit-page" }, all.length ? `Page ${page + 1}: entries #${all[0].seq} to #${oldest.seq}` : `Page ${page + 1}`),
        pages[page + 1] ? h("button", { type: "button", class: "secondary", onclick: () => load(page + 1) }, "Older entries →") : null);
      out.replaceChildren(...[h("h2", {}, rows.length === 1 ? "1 entry" : `${rows.length} entries`),
        hidden ? h("p", { class: "meta", "data-testid": "logins-hidden" }, `${plural(hidden, "sign-in")} hidden on this page (tick “Show sign-ins”).`) : null,
        rows.length ? h("div", { class: "tablewrap" }, table)
          : h("p", {}, all.length ? "Only sign-ins on this page." : "No entries match these filters. Clear a filter or widen the dates."),
        nav].filter(Boolean));
    } catch (err) { out.replaceChildren(errorBox(err)); }
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); load(0); });
  showLogins.addEventListener("change", () => load(0));
  main.append(chain, form, out);
  api("/api/v1/audit/verify").then((s) => {
    chain.replaceChildren(s.ok
      ? h("p", { class: "okay", "data-testid": "chain-ok" }, `Hash chain verified: ${s.entries} entries, none altered.`)
      : h("p", { class: "error", role: "alert" }, `Hash chain BROKEN at entry #${s.first_bad_seq}: ${s.problem}.`));
  }).catch((err) => chain.replaceChildren(errorBox(err)));
  load(0);
}

// An entry's details as "key: value" lines, without the nesting of its JSON. Subjects are named where
// the server gave their names (subject_names: only to a role that may read subjects; the log keeps ids).
const SUBJECT_FIELDS = ["subject_id", "from_subject_id", "to_subject_id"];
const SUBJECT_LISTS = ["subject_ids", "subjects_erased"];
function detailList(entry) {
  const names = entry.subject_names || {};
  const who = (id) => (names[id] ? `${names[id]} (#${id})` : `#${id}`);
  const pair = (p) => `${who(p[0])} ${Number(p[1]).toFixed(3)}`;
  const candidates = (v) => (v.length && Array.isArray(v[0]) && Array.isArray(v[0][0])) || (v.length && Array.isArray(v[0]) && !v[0].length)
    ? v.map((face, i) => `face ${i + 1}: ${face.length ? face.map(pair).join(", ") : "no match"}`).join("; ")  // per face
    : v.length ? v.map(pair).join(", ") : "none";
  const dl = h("dl", { class: "kv" });
  for (const [k, v] of Object.entries(entry.details || {})) {
    let text;
    if (v === null) text = "–";
    else if (SUBJECT_FIELDS.includes(k) && typeof v === "number") text = who(v);
    else if (SUBJECT_LISTS.includes(k) && Array.isArray(v)) text = v.length ? v.map(who).join(", ") : "none";
    else if (k === "candidates" && Array.isArray(v)) text = candidates(v);
    else text = typeof v === "object" ? JSON.stringify(v) : String(v);
    dl.append(h("dt", {}, k.replaceAll("_", " ")), h("dd", {}, text));
  }
  return dl;
}

// Keep the export lines the on-screen filters keep (JSON Lines, or CSV with a header row).
async function filterExport(blob, format, keep) {
  const text = await blob.text();
  if (format === "jsonl") {
    const lines = text.split("\n").filter((l) => l.trim() && keep(JSON.parse(l)));
    return new Blob([lines.map((l) => `${l}\n`).join("")], { type: "application/x-ndjson" });
  }
  const rows = parseCsv(text);
  const head = rows[0] || [];
  const kept = rows.slice(1).filter((r) => {
    const entry = Object.fromEntries(head.map((k, i) => [k, r[i]]));
    try { entry.details = JSON.parse(entry.details || "{}"); } catch { entry.details = {}; }
    return keep(entry);
  });
  const cell = (c) => (/[",\n\r]/.test(c) ? `"${c.replaceAll('"', '""')}"` : c);
  return new Blob([[head, ...kept].map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n"], { type: "text/csv" });
}

function parseCsv(text) {
  const rows = []; let row = [], cell = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (ch === '"') quoted = false; else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { row.push(cell); cell = ""; }
    else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); rows.push(row); row = []; cell = "";
    } else cell += ch;
  }
  if (cell || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

// ---- admin: API keys and collections ---------------------------------------------------------------
async function adminPage() {
  main.append(heading("Admin"));
  const keys = h("section", { id: "admin-keys", "aria-label": "API keys" });
  const colls = h("section", { id: "admin-collections", "aria-label": "Collections" });
  main.append(keys, colls);
  await Promise.all([drawKeys(keys), drawCollections(colls)]);
}

const ROLE_NAMES = ["searcher", "enroller", "reviewer", "auditor", "admin"];
const when = (t) => (t ? t.replace("T", " ").slice(0, 16) : "never");

async function drawKeys(section) {
  let rows;
  try { rows = await api("/api/v1/keys"); } catch (err) { section.replaceChildren(errorBox(err)); return; }
  const name = h("input", { type: "text", id: "key-name", name: "name", required: true, maxlength: 200, placeholder: "e.g. Alice (reviewer)" });
  const roleSel = h("select", { id: "key-role", name: "role" }, ROLE_NAMES.map((r) => h("option", { value: r }, r)));
  const created = h("div", { "aria-live": "polite", id: "key-created" });
  const button = h("button", { type: "submit" }, "Create key");
  const form = h("form", { class: "stack panel" }, h("h3", {}, "New API key"),
    h("div", { class: "row" }, h("label", { for: "key-name" }, "Who will use it", name), h("label", { for: "key-role" }, "Role", roleSel)),
    h("div", {}, button), created);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(button, async () => {
      try {
        const k = await api("/api/v1/keys", { method: "POST", json: { name: name.value.trim(), role: roleSel.value } });
        await drawKeys(section);
        document.getElementById("key-created").replaceChildren(h("div", { class: "okay", role: "status" },
          h("strong", {}, `Key for ${k.name} (${k.role}) created. Copy it now: it is shown only once.`),
          h("code", { class: "secret", "data-testid": "new-key" }, k.key)));
      } catch (err) { created.replaceChildren(errorBox(err)); }
    });
  });
  const table = h("table", { class: "cards", "data-testid": "keys" }, h("caption", { class: "visually-hidden" }, "API keys"),
    h("thead", {}, h("tr", {}, ["Name", "Role", "Prefix", "Created", "Last used", "State", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((k) => h("tr", {},
      h("td", { "data-label": "Name" }, k.name), h("td", { "data-label": "Role" }, k.role), h("td", { "data-label": "Prefix" }, k.prefix),
      h("td", { "data-label": "Created" }, when(k.created_at)), h("td", { "data-label": "Last used" }, when(k.last_used_at)),
      h("td", { "data-label": "State" }, k.active ? "active" : `revoked ${when(k.revoked_at)}`),
      h("td", {}, k.active && k.prefix !== session.me.prefix ? h("button", { type: "button", class: "danger small",
        "aria-label": `Revoke the key of ${k.name}`, onclick: (e) => busy(e.currentTarget, async () => {
          if (!confirm(`Revoke the key of ${k.name}? Whoever uses it is signed out at once.`)) return;
          try { await api(`/api/v1/keys/${enc(k.prefix)}`, { method: "DELETE" }); toast(`Key of ${k.name} revoked.`); await drawKeys(section); }
          catch (err) { section.append(errorBox(err)); }
        }) }, "Revoke") : k.active ? h("span", { class: "meta" }, "your key") : null)))));
  section.replaceChildren(h("h2", {}, `API keys (${rows.filter((k) => k.active).length} active)`),
    h("div", { class: "tablewrap" }, table), form);
}

async function drawCollections(section) {
  let rows;
  try { rows = await api("/api/v1/collections"); } catch (err) { section.replaceChildren(errorBox(err)); return; }
  const list = h("ul", { class: "candidates" });
  for (const c of rows) {
    const days = h("input", { type: "number", id: `ret-${c.id}`, min: 1, max: 1095, value: c.retention_days });
    const keep = h("input", { type: "checkbox", id: `crops-${c.id}`, checked: c.keep_crops });
    const status = h("span", { class: "meta", "aria-live": "polite" });
    const save = h("button", { type: "button", class: "small", onclick: (e) => busy(e.currentTarget, async () => {
      try {
        if (Number(days.value) !== c.retention_days) {
          await api(`/api/v1/collections/${enc(c.name)}/retention`, { method: "PUT", json: { days: Number(days.value) } });
        }
        if (keep.checked !== c.keep_crops) {
          if (!keep.checked && !confirm(`Stop keeping face crops in ${c.name}? Every kept crop is deleted now.`)) { keep.checked = true; return; }
          await api(`/api/v1/collections/${enc(c.name)}/keep-crops`, { method: "PUT", json: { keep_crops: keep.checked } });
        }
        toast(`Saved ${c.name}.`); await drawCollections(section);
      } catch (err) { status.replaceChildren(errorBox(err)); }
    }) }, `Save ${c.name}`);
    list.append(h("li", { class: "candidate", "data-testid": "admin-collection" },
      h("span", { class: "name" }, c.name),
      h("span", {}, `${plural(c.subjects, "subject")}, ${plural(c.samples, "sample")}`),
      h("dl", { class: "kv settings" }, ...[["Model", c.model_id], ["Detector", c.detector || "the model's own"],
        ["Retention", c.retention_days ? `${plural(c.retention_days, "day")} after the last interaction` : "–"],
        ["Face crops", c.keep_crops ? "kept (encrypted)" : "not kept"]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("div", { class: "row" }, h("label", { for: `ret-${c.id}` }, "Retention (days after the last interaction)", days,
        h("span", { class: "hint" }, "At most 1,095 (3 years).")),
        h("label", { class: "check", for: `crops-${c.id}` }, keep, "Keep encrypted face crops (to move to another model later)")),
      h("div", { class: "row buttons" }, save, status)));
  }
  section.replaceChildren(h("h2", {}, `Collections (${rows.length})`),
    rows.length ? list : h("p", {}, "No collection yet: create the first one below."), await adminCollectionForm(section));
}

// A new collection with its model pack, detector, retention and keep-crops (as `collection create`).
async function adminCollectionForm(section) {
  let choices = { models: [], detectors: [] };
  try { choices = await api("/api/v1/collections/-/choices"); } catch { /* the form still works with the defaults */ }
  const name = h("input", { type: "text", id: "ac-name", name: "name", required: true, maxlength: 200 });
  const model = h("select", { id: "ac-model", name: "model" }, h("option", { value: "" }, "the default"),
    choices.models.map((m) => h("option", { value: m }, m)));
  const detector = h("select", { id: "ac-detector", name: "detector" }, h("option", { value: "" }, "the model's own"),
    choices.detectors.map((d) => h("option", { value: d.name }, `${d.name}${d.commercial_use ? "" : " (non-commercial licence)"}`)));
  const days = h("input", { type: "number", id: "ac-retention", name: "retention_days", min: 1, max: 1095, value: 1095 });
  const keep = h("input", { type: "checkbox", id: "ac-crops", name: "keep_crops" });
  const button = h("button", { type: "submit" }, "Create collection");
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "stack panel", "data-testid": "admin-new-collection" }, h("h3", {}, "New collection"),
    h("div", { class: "row" }, h("label", { for: "ac-name" }, "Name", name),
      h("label", { for: "ac-model" }, "Model pack", model, h("span", { class: "hint" }, "A collection stays pinned to its pack.")),
      h("label", { for: "ac-detector" }, "Face detector", detector,
        h("span", { class: "hint" }, "Only finds the faces: the vectors stay the pack's.")),
      h("label", { for: "ac-retention" }, "Retention (days)", days, h("span", { class: "hint" }, "At most 1,095 (3 years)."))),
    h("label", { class: "check", for: "ac-crops" }, keep, "Keep encrypted face crops (to move to another model later)"),
    h("div", {}, button), status);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(button, async () => {
      try {
        const body = { name: name.value.trim(), keep_crops: keep.checked };
        if (model.value) body.model = model.value;
        if (detector.value) body.detector = detector.value;
        const made = await api("/api/v1/collections", { method: "POST", json: body });
        if (Number(days.value) && Number(days.value) !== made.retention_days) {
          await api(`/api/v1/collections/${enc(made.name)}/retention`, { method: "PUT", json: { days: Number(days.value) } });
        }
        toast(`Collection ${made.name} created.`);
        await drawCollections(section);
      } catch (err) { status.replaceChildren(errorBox(err)); }
    });
  });
  return form;
}

// ---- review --------------------------------------------------------------------------------------
// The queue of open cases, then one case: each candidate shows the probe's face (and the whole probe
// with that face boxed) next to the candidate's enrolled photos with per-photo similarity, so the two-
// reviewer rule is a visual comparison. The reviewer is the signed-in key: the server records it.
function reviewPage() {
  main.append(heading("Review"));
  const caseId = h("input", { type: "text", id: "review-case", name: "case_id", required: true, maxlength: 200,
    value: session.caseId });
  const button = h("button", { type: "submit" }, "Show candidates");
  const queue = h("section", { id: "review-queue", "aria-label": "Review queue" }, h("p", {}, "Loading the queue…"));
  const out = h("section", { id: "review", "aria-live": "polite", "aria-label": "Candidates of the case" });
  const form = h("form", { class: "stack panel" },
    h("p", { class: "meta" }, "Search results are candidates, not identifications. A match counts as confirmed " +
      "only after two different reviewers confirm it; one rejection rejects it. Compare the faces, not the number."),
    h("div", { class: "row" }, h("label", { for: "review-case" }, "Case id", caseId), h("div", {}, button)));
  const open = (id) => { caseId.value = id; load(); };
  const load = () => busy(button, async () => {
    const id = caseId.value.trim();
    if (!id) return;
    session.caseId = id;
    try { drawCase(out, await api(`/api/v1/review/${enc(id)}`), load); } catch (err) { out.replaceChildren(errorBox(err)); }
    loadQueue(queue, open);
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  main.append(queue, form, out, zoomDialog());
  loadQueue(queue, open);
  if (caseId.value) load();
}

async function loadQueue(queue, open) {
  let rows;
  try { rows = await api("/api/v1/review"); } catch (err) { queue.replaceChildren(errorBox(err)); return; }
  if (!rows.length) {
    queue.replaceChildren(h("h2", {}, "Review queue"),
      h("p", {}, "No case is waiting. Searches run with a case id put their candidates here."));
    return;
  }
  const openCount = rows.filter((r) => r.pending).length;
  queue.replaceChildren(h("h2", {}, `Review queue: ${plural(openCount, "open case")}`),
    h("div", { class: "tablewrap" }, h("table", { class: "cards", "data-testid": "review-queue" },
      h("caption", { class: "visually-hidden" }, "Cases with candidates, open cases first"),
      h("thead", {}, h("tr", {}, ["Case", "Pending", "Confirmed", "Rejected", "Collection", ""].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((r) => h("tr", { class: r.pending ? "open" : "" },
        h("td", { "data-label": "Case" }, r.case_id), h("td", { "data-label": "Pending" }, r.pending),
        h("td", { "data-label": "Confirmed" }, r.confirmed), h("td", { "data-label": "Rejected" }, r.rejected),
        h("td", { "data-label": "Collection" }, r.collections.join(", ")),
        h("td", {}, h("button", { type: "button", class: "secondary", "aria-label": `Open case ${r.case_id}`,
          onclick: () => open(r.case_id) }, "Open"))))))));
}

// One dialog shows any face large; `zoom(blobUrl, caption)` opens it.
function zoomDialog() {
  const img = h("img", { id: "zoom-img", alt: "" });
  const caption = h("p", { id: "zoom-caption" });
  const dialog = h("dialog", { id: "zoom", class: "zoom", "aria-labelledby": "zoom-caption" }, caption, img,
    h("form", { method: "dialog" }, h("button", { type: "submit" }, "Close")));
  return dialog;
}

function zoom(src, text) {
  const dialog = document.getElementById("zoom");
  document.getElementById("zoom-img").src = src;
  document.getElementById("zoom-img").alt = text;
  document.getElementById("zoom-caption").textContent = text;
  dialog.showModal();
}

// An image that needs the key: fetched, shown from a blob: URL, enlarged on click.
function keyedImage(path, alt, { cls = "face", fallback = "not available", big } = {}) {
  const box = h("span", { class: `nothumb ${cls}`, text: "loading…" });
  api(path).then((blob) => {
    const src = URL.createObjectURL(blob);
    const img = h("img", { src, alt, class: cls });
    const b = h("button", { type: "button", class: "zoomable", "aria-label": `Enlarge: ${alt}`,
      onclick: () => (big ? api(big).then((b2) => zoom(URL.createObjectURL(b2), alt)) : zoom(src, alt)) }, img);
    box.replaceWith(b);
  }).catch(() => { box.textContent = fallback; box.setAttribute("title", alt); });
  return box;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

function drawCase(out, status, reload) {
  const need = status.confirmations_needed;
  if (!status.exists) {
    out.replaceChildren(h("div", { class: "nomatch", role: "alert", "data-testid": "no-such-case" },
      h("strong", {}, "No such case"), `No search was run with the case id “${status.case_id}”. Check the id, or pick a case from the queue.`));
    return;
  }
  if (!status.candidates.length) {
    out.replaceChildren(h("h2", {}, `Case ${status.case_id}`),
      h("p", {}, "This case has no candidates: its searches found nobody above the threshold."));
    return;
  }
  const list = h("ul", { class: "candidates" });
  for (const c of status.candidates) list.append(reviewCandidate(status, c, need, reload));
  out.replaceChildren(h("h2", {}, `Case ${status.case_id}: ${plural(status.candidates.length, "candidate")}`),
    h("p", { class: "meta" }, `You review as ${status.you}.`), list);
}

function reviewCandidate(status, c, need, reload) {
  const mine = c.confirmed_by.includes(status.you) ? "confirm" : c.rejected_by.includes(status.you) ? "reject" : null;
  const state = c.state === "confirmed" ? `Confirmed by ${c.confirmed_by.join(" and ")}`
    : c.state === "rejected" ? `Rejected by ${c.rejected_by.join(", ")}`
    : `Pending: ${c.confirmed_by.length} of ${need} confirmations${c.confirmed_by.length ? ` (${c.confirmed_by.join(", ")})` : ""}`;
  const base = `/api/v1/review/${enc(status.case_id)}/probe?candidate=${c.candidate_id}`;
  const probe = c.probe || { kept: false };
  const probeSide = h("div", { class: "probe-side", "data-testid": "review-probe" }, h("h3", {}, "Face searched"));
  if (probe.kept) {
    probeSide.append(
      keyedImage(`${base}&view=face`, `The searched face (face ${probe.face_position} of ${probe.faces} from the left)`,
        { cls: "face big", big: `${base}&view=photo` }),
      h("p", { class: "meta" }, `Face ${probe.face_position} of ${probe.faces} in the photo, counted from the left.`),
      keyedImage(`${base}&view=photo`, "The whole searched photo, this face boxed in green", { cls: "whole" }));
  } else {
    probeSide.append(h("p", { class: "nothumb face big" }, c.state === "pending"
      ? "The probe photo was not kept (searched outside the web UI or API)."
      : "The probe photo was deleted once every candidate of its search was decided."));
  }
  const sims = probe.sample_similarity || {};
  const samples = h("div", { class: "thumbs review-samples", "data-testid": "review-samples" }, "Loading enrolled photos…");
  api(`/api/v1/collections/${enc(c.collection)}/subjects/id:${c.subject_id}`).then((s) => {
    const purpose = `review of case ${status.case_id}`;
    const q = (side) => `?purpose=${enc(purpose)}&case_id=${enc(status.case_id)}${side ? `&size=${side}` : ""}`;
    samples.replaceChildren(...s.samples.map((x) => {
      const thumbBase = `/api/v1/collections/${enc(c.collection)}/subjects/id:${c.subject_id}/samples/${x.sample_id}/thumbnail`;
      const sim = sims[x.sample_id];
      return h("figure", { class: "sample" },
        keyedImage(thumbBase + q(240), `Enrolled photo of ${c.name} (sample ${x.sample_id})`,
          { cls: "face big", fallback: "photo not kept", big: thumbBase + q(512) }),
        h("figcaption", { "data-testid": "sample-similarity" },
          sim !== undefined ? `similarity ${fmtSim(sim)}` : "below the threshold"));
    }));
    if (!s.samples.length) samples.replaceChildren("No enrolled photos left.");
  }).catch((err) => samples.replaceChildren(errorBox(err)));
  const item = h("li", { class: `candidate review-${c.state}`, "data-testid": "review-candidate" },
    h("span", { class: "name" }, c.name),
    h("span", {}, `Best similarity ${fmtSim(c.similarity)} · collection ${c.collection} · search #${c.search_seq}`),
    h("div", { class: "compare" }, probeSide,
      h("div", { class: "enrolled-side" }, h("h3", {}, `Enrolled photos of ${c.name}`), samples)),
    h("strong", { class: `state-${c.state}`, "data-testid": "review-state" }, state));
  const decisions = (c.decisions || []);
  if (decisions.length) {
    item.append(h("ul", { class: "decisions", "data-testid": "review-notes" }, decisions.map((d) =>
      h("li", {}, `${d.decision === "confirm" ? "Confirmed" : "Rejected"} by ${d.reviewer}`,
        d.note ? h("q", {}, d.note) : h("span", { class: "meta" }, " (no note)")))));
  }
  if (mine) item.append(h("span", { class: "meta" }, `You decided: ${mine}.`));
  else if (c.state === "pending") {
    const note = h("input", { type: "text", id: `note-${c.candidate_id}`, maxlength: 2000 });
    const decide = (decision) => (e) => busy(e.currentTarget, async () => {
      try {
        await api(`/api/v1/review/${enc(status.case_id)}/decisions`, { method: "POST",
          json: { candidate: c.candidate_id, decision, note: note.value.trim() || null } });
        toast(`${decision === "confirm" ? "Confirmed" : "Rejected"} ${c.name}`);
        await reload();
      } catch (err) { item.append(errorBox(err)); }
    });
    item.append(h("label", { for: `note-${c.candidate_id}` }, "Note (optional)", note),
      h("div", { class: "row buttons" },
        h("button", { type: "button", onclick: decide("confirm"), "aria-label": `Confirm ${c.name}` }, "Confirm: same person"),
        h("button", { type: "button", class: "danger", onclick: decide("reject"), "aria-label": `Reject ${c.name}` }, "Reject: not this person")));
  }
  return item;
}
