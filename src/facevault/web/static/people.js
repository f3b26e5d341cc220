// facevault web UI: the People page of photo libraries. A classic script loaded after app.js: it uses
// app.js's helpers (h, api, session, main, go, render, heading, toast, busy, errorBox, current, zoom,
// zoomDialog, plural, fmtSim, fmrWords, limits, mb, enc, CAN_ENROLL). Two views, both deep-linkable:
//   /people?library=L               the people grid of library L (with adding photos and search by photo)
//   /people?library=L&person=N      one person: every photo with their face boxed, and the curation tools
// Everything from the server goes in as text (h() makes text nodes); images need the key, so they are
// fetched with it and shown from blob: URLs.
"use strict";

function peoplePage() { return PEOPLE.page(); }

const PEOPLE = (() => {
  const CAN_SEARCH = ["admin", "searcher"];
  const store = {
    get library() { return sessionStorage.getItem("fv.library") || ""; },
    set library(name) { sessionStorage.setItem("fv.library", name); },
  };
  const base = (lib) => `/api/v1/libraries/${enc(lib)}`;
  const gridHref = (lib) => `/people?library=${enc(lib)}`;
  const personHref = (lib, n) => `/people?library=${enc(lib)}&person=${enc(n)}`;
  const link = (href, text, attrs = {}) => h("a", { href, ...attrs, onclick: (e) => { e.preventDefault(); go(href); } }, text);
  const peopleCount = (n) => `${n} ${n === 1 ? "person" : "people"}`;
  const IMAGE_FILE = /\.(jpe?g|png|webp|bmp|gif|tiff?)$/i;
  const UPLOAD_ERRORS = {
    unreadable_image: "Not a readable photo (damaged, or not an image)", image_too_large: "Image too large (too many pixels)",
    file_too_large: "File over the server's size limit", empty_image: "Empty file", unsupported_format: "Not an image this server reads",
  };
  // An image that needs the key, without a zoom button (cards are links already).
  // Images are fetched with the key header, so the browser's own lazy loading cannot apply: a thumbnail
  // is asked for when it scrolls near the screen (a library of thousands of people loads what is seen).
  const seen = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      seen.unobserve(e.target);
      e.target.fvLoad();
    }
  }, { rootMargin: "400px" }) : null;
  function keyed(path, alt, cls, fallback) {
    const box = h("span", { class: `nothumb ${cls}`, text: "loading…" });
    box.fvLoad = () => api(path).then((blob) => box.replaceWith(h("img", { src: URL.createObjectURL(blob), alt, class: cls })))
      .catch(() => { box.textContent = fallback; });
    if (seen) seen.observe(box); else box.fvLoad();
    return box;
  }

  function faceThumb(lib, faceId, alt) {
    if (!lib.keep_crops) {
      return h("span", { class: "nothumb face-thumb", title: "An admin chose, when creating this library, to keep no face images." },
        "thumbnails are off in this library");
    }
    if (!faceId) return h("span", { class: "nothumb face-thumb" }, "no face");
    return keyed(`${base(lib.name)}/faces/${faceId}/crop`, alt, "face-thumb", "no thumbnail");
  }

  // A person's face thumbnail. The people list names a feature face only when one was chosen; otherwise
  // the person's own view names its best face, asked for a few at a time.
  const detailQueue = { running: 0, waiting: [] };
  function queued(work) {
    return new Promise((resolve, reject) => {
      const next = () => {
        detailQueue.running += 1;
        work().then(resolve, reject).finally(() => {
          detailQueue.running -= 1;
          if (detailQueue.waiting.length) detailQueue.waiting.shift()();
        });
      };
      if (detailQueue.running < 4) next(); else detailQueue.waiting.push(next);
    });
  }
  function personThumb(lib, p, alt) {
    if (!lib.keep_crops || p.feature_face) return faceThumb(lib, p.feature_face, alt);
    const box = h("span", { class: "nothumb face-thumb", text: "loading…" });
    queued(() => api(`${base(lib.name)}/people/${p.person}`))
      .then((full) => box.replaceWith(faceThumb(lib, full.feature_face, alt)))
      .catch(() => { box.textContent = "no thumbnail"; });
    return box;
  }

  // The image frame a face's box is measured in: the server says so; else the photo as served.
  function frameOf(face, img) {
    const w = face.image_width ?? face.photo_width ?? face.width ?? (face.image && face.image.width);
    const hgt = face.image_height ?? face.photo_height ?? face.height ?? (face.image && face.image.height);
    return w > 0 && hgt > 0 ? [Number(w), Number(hgt)] : [img.naturalWidth, img.naturalHeight];
  }

  // A library photo (GET .../photos/{id}) with faces boxed over it; a click shows it large, boxes drawn in.
  // boxes: [{ box, frame (the face record), label, kind }].
  function boxedPhoto(lib, photoId, boxes, alt) {
    const holder = h("span", { class: "nothumb photo-wait", text: "loading…" });
    api(`${base(lib)}/photos/${photoId}`).then((blob) => {
      const src = URL.createObjectURL(blob);
      const img = h("img", { src, alt, class: "lib-photo" });
      const frame = h("span", { class: "boxed" }, img);
      const button = h("button", { type: "button", class: "zoomable boxed-button", "aria-label": `Enlarge: ${alt}`,
        onclick: () => zoomBoxed(img, boxes, alt) }, frame);
      img.addEventListener("load", () => {
        for (const b of boxes) {
          const [W, H] = frameOf(b.frame || {}, img);
          const [x1, y1, x2, y2] = b.box;
          const el = h("span", { class: `lib-box ${b.kind || ""}`, "aria-hidden": "true", "data-testid": "face-box" },
            b.label ? h("span", {}, b.label) : null);
          Object.assign(el.style, { left: `${(100 * x1) / W}%`, top: `${(100 * y1) / H}%`,
            width: `${(100 * (x2 - x1)) / W}%`, height: `${(100 * (y2 - y1)) / H}%` });
          frame.append(el);
        }
      });
      holder.replaceWith(button);
    }).catch(() => { holder.textContent = "photo not available"; holder.classList.add("photo-missing"); });
    return holder;
  }

  function zoomBoxed(img, boxes, alt) {
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    g.lineWidth = Math.max(2, Math.round(Math.max(c.width, c.height) / 250));
    for (const b of boxes) {
      const [W, H] = frameOf(b.frame || {}, img);
      const sx = c.width / W, sy = c.height / H;
      const [x1, y1, x2, y2] = b.box;
      g.strokeStyle = "#ffd33d"; g.strokeRect(x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
    }
    c.toBlob((blob) => zoom(URL.createObjectURL(blob), alt), "image/jpeg", 0.92);
  }

  const shortName = (photo) => (photo ? String(photo).replace(/^upload:/, "").split(/[\\/]/).pop() : "photo");

  // ---- the page: which view ------------------------------------------------------------------------
  async function page() {
    const seq = main.dataset.render;
    const q = new URLSearchParams(location.search);
    if (q.get("library") && q.get("person")) return personView(seq, q.get("library"), q.get("person"));
    return gridView(seq, q.get("library"));
  }

  // ---- the people grid -----------------------------------------------------------------------------
  async function gridView(seq, wanted) {
    main.append(heading("People"));
    let libs;
    try { libs = await api("/api/v1/libraries"); } catch (err) { main.append(errorBox(err)); return; }
    if (!current(seq)) return;
    if (wanted && libs.some((l) => l.name === wanted)) store.library = wanted;
    else if (!libs.some((l) => l.name === store.library)) store.library = libs.length ? libs[0].name : "";
    const lib = libs.find((l) => l.name === store.library) || null;

    const select = h("select", { id: "library", name: "library" },
      libs.length ? libs.map((l) => h("option", { value: l.name }, `${l.name} (${peopleCount(l.people ?? 0)}, ${plural(l.photos ?? 0, "photo")})`))
        : h("option", { value: "" }, "(no libraries yet)"));
    select.value = store.library;
    select.addEventListener("change", () => { store.library = select.value; go(gridHref(select.value)); });
    const showHidden = h("input", { type: "checkbox", id: "show-hidden", name: "hidden" });
    const grid = h("section", { id: "people", "aria-label": "People", "aria-live": "polite" });
    const tools = h("div", { class: "stack panel" },
      h("div", { class: "row" }, h("label", { for: "library" }, "Library", select),
        lib ? h("label", { class: "check", for: "show-hidden" }, showHidden, "Show hidden people") : null),
      lib ? h("p", { class: "meta", "data-testid": "library-about" },
        `Purpose: ${lib.purpose} · legal basis: ${lib.legal_basis} · kept ${plural(lib.retention_days, "day")} after a person is last seen · ` +
        `face thumbnails ${lib.keep_crops ? "kept (encrypted)" : "off"} · model ${lib.model_id}`) : null);
    main.append(tools);
    if (role() === "admin") main.append(newLibraryForm(libs.length === 0));
    if (!lib) {
      main.append(h("div", { class: "nomatch", "data-testid": "no-library" }, h("strong", {}, "No photo library yet"),
        role() === "admin" ? "Create one with “New library” above: give it a purpose and a legal basis, then add photos."
          : "An admin creates photo libraries; ask one to create a library for your photos."));
      return;
    }
    const load = () => drawGrid(grid, lib, showHidden.checked);
    const afterUpload = async () => {
      try {
        const fresh = (await api("/api/v1/libraries")).find((l) => l.name === lib.name);
        const opt = fresh && [...select.options].find((o) => o.value === lib.name);
        if (opt) opt.textContent = `${fresh.name} (${peopleCount(fresh.people ?? 0)}, ${plural(fresh.photos ?? 0, "photo")})`;
      } catch { /* the counts in the picker stay as they were */ }
      await load();
    };
    showHidden.addEventListener("change", load);
    if (allowed(CAN_ENROLL)) main.append(uploadForm(lib, afterUpload));
    if (allowed(CAN_SEARCH)) main.append(searchForm(lib));
    main.append(grid, zoomDialog());
    await load();
  }

  // People come a page at a time from the server, most faces first: a library may hold hundreds of
  // thousands of them.
  async function drawGrid(grid, lib, hidden) {
    const url = (offset) => `${base(lib.name)}/people?limit=${GRID_PAGE}&offset=${offset}${hidden ? "&hidden=true" : ""}`;
    let rows;
    try { rows = await api(url(0)); }
    catch (err) { grid.replaceChildren(errorBox(err)); return; }
    if (!rows.length) {
      grid.replaceChildren(h("h2", {}, "No people yet"), h("div", { class: "nomatch", "data-testid": "no-people" },
        h("strong", {}, `No people in ${lib.name} yet`),
        allowed(CAN_ENROLL) ? "Add photos above: every face in them is found and grouped into people, who then appear here."
          : "People appear here once an enroller adds photos to this library."));
      return;
    }
    const heading = h("h2", {});
    const list = h("ul", { class: "people-grid", "data-testid": "people-grid" });
    const more = h("button", { type: "button", class: "more-people" }, "Show more people");
    let shown = 0;
    let hiddenCount = 0;
    const add = (page) => {
      list.append(...page.map((p) => personCard(lib, p)));
      shown += page.length;
      hiddenCount += page.filter((p) => p.hidden).length;
      const done = page.length < GRID_PAGE;
      more.hidden = done;
      heading.textContent = (done ? peopleCount(shown) : `${shown}+ people`) + (hiddenCount ? ` (${hiddenCount} hidden)` : "");
    };
    more.addEventListener("click", () => busy(more, async () => {
      try { add(await api(url(shown))); } catch (err) { toast(err.message); }
    }));
    add(rows);
    grid.replaceChildren(heading, list, more);
  }

  const GRID_PAGE = 200;
  function personCard(lib, p) {
    const counts = `${plural(p.faces, "face")} in ${plural(p.photos, "photo")}`;
    const a = link(personHref(lib.name, p.person), null, { class: "person-link",
      "aria-label": `${p.label}, ${counts}${p.hidden ? ", hidden" : ""}` });
    a.append(personThumb(lib, p, ""), h("span", { class: "person-label" }, p.label), h("span", { class: "meta" }, counts));
    if (p.hidden) a.append(h("span", { class: "badge" }, "hidden"));
    return h("li", { class: `person-card${p.hidden ? " is-hidden" : ""}`, "data-testid": "person-card", "data-person": p.person }, a);
  }

  function newLibraryForm(open) {
    const input = (id, attrs) => h("input", { type: "text", id, name: id, ...attrs });
    const name = input("library-name", { required: true, maxlength: 200 });
    const purpose = input("library-purpose", { required: true, maxlength: 2000 });
    const basis = input("library-basis", { required: true, maxlength: 2000 });
    const days = h("input", { type: "number", id: "library-retention", name: "retention_days", min: 1, max: 1095, value: 1095, required: true });
    const keep = h("input", { type: "checkbox", id: "library-crops", name: "keep_crops" });
    const button = h("button", { type: "submit" }, "Create library");
    const status = h("div", { "aria-live": "polite" });
    const form = h("form", { class: "stack" },
      h("label", { for: "library-name" }, "Library name", name),
      h("label", { for: "library-purpose" }, "Library purpose", purpose,
        h("span", { class: "hint" }, "Why the faces in these photos are indexed (e.g. “family photo archive”). Recorded with every change.")),
      h("label", { for: "library-basis" }, "Legal basis", basis,
        h("span", { class: "hint" }, "Under what right the faces are processed (e.g. household use, consent of the people in them).")),
      h("label", { for: "library-retention" }, "Retention (days after a person is last seen)", days,
        h("span", { class: "hint" }, "At most 1,095 (3 years). After that a person's face data is erased.")),
      h("label", { class: "check", for: "library-crops" }, keep,
        "Keep face thumbnails (encrypted; without them the people grid shows no faces)"),
      h("div", {}, button), status);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(button, async () => {
        try {
          const made = await api("/api/v1/libraries", { method: "POST", json: { name: name.value.trim(), purpose: purpose.value,
            basis: basis.value, retention_days: Number(days.value), keep_crops: keep.checked } });
          store.library = made.name;
          go(gridHref(made.name));
          toast(`Library ${made.name} created. Add photos to it next.`);
        } catch (err) { status.replaceChildren(errorBox(err)); }
      });
    });
    return h("details", { class: "panel", open }, h("summary", {}, "New library"), form);
  }

  // ---- adding photos by upload ---------------------------------------------------------------------
  function uploadForm(lib, reload) {
    const files = h("input", { type: "file", id: "upload-files", name: "files", accept: "image/*", multiple: true });
    const folder = h("input", { type: "file", id: "upload-folder", name: "folder", multiple: true, webkitdirectory: true });
    const button = h("button", { type: "submit" }, "Add photos");
    const out = h("div", { id: "upload-results", "aria-live": "polite" });
    const form = h("form", { class: "stack" },
      h("p", { class: "meta" }, "Every face in the photos is found and grouped into people. Photos the library holds already " +
        "are skipped; faces of people who opted out are never stored."),
      h("div", { class: "row" }, h("label", { for: "upload-files" }, "Photos to add", files),
        h("label", { for: "upload-folder" }, "Or a whole folder", folder)),
      h("div", {}, button), out);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const picked = [...files.files, ...[...folder.files].filter((f) => f.type.startsWith("image/") || IMAGE_FILE.test(f.name))];
      if (!picked.length) { out.replaceChildren(errorBox(new Error("Pick photos or a folder first."))); return; }
      busy(button, async () => {
        await uploadAll(lib, picked, out);
        form.querySelectorAll("input[type=file]").forEach((i) => { i.value = ""; });
        await reload();
      });
    });
    return h("details", { class: "panel", open: (lib.photos ?? 0) === 0 }, h("summary", {}, "Add photos"), form);
  }

  async function uploadAll(lib, picked, out) {
    const lim = await limits();
    const maxBytes = lim.max_upload_bytes || 10485760;
    const perRequest = Math.max(1, Math.min(lim.max_files_per_request || 50, 10));  // small batches: the bar moves
    const total = picked.length;
    const shownName = (f) => f.webkitRelativePath || f.name;
    const bar = h("progress", { id: "upload-progress", max: total, value: 0, "aria-label": "Photos processed" });
    const line = h("p", { class: "busy", "data-testid": "upload-line" }, `Sending ${plural(total, "photo")}…`);
    out.replaceChildren(line, bar);
    const failed = [];
    let done = 0, faces = 0, added = 0, skipped = 0;
    const send = [];
    for (const f of picked) {
      if (f.size > maxBytes) failed.push({ name: shownName(f), why: `${mb(f.size)} is over the server's ${mb(maxBytes)} limit; not sent.` });
      else send.push(f);
    }
    done = failed.length;
    bar.value = done;
    const batches = [];
    for (let i = 0; i < send.length; i += perRequest) batches.push(send.slice(i, i + perRequest));
    let stopped = null;
    for (const batch of batches) {
      line.textContent = `Adding photos: ${done} of ${total} done, ${plural(faces, "face")} found so far…`;
      const data = new FormData();
      for (const f of batch) data.append("files", f, f.name);
      let res;
      try { res = await api(`${base(lib.name)}/uploads`, { method: "POST", form: data }); }
      catch (err) {
        if (err.status === 401 || err.status === 403 || err.status === 404) { stopped = err; break; }
        for (const f of batch) failed.push({ name: shownName(f), why: err.message });
        done += batch.length; bar.value = done;
        continue;
      }
      const rows = res.files || [];
      batch.forEach((f, i) => {
        const r = rows.find((x) => x.name === f.name && !x.seen) || rows[i] || {};
        r.seen = true;
        faces += Number(r.faces || 0);
        if (r.status === "added") added += 1;
        else if (r.status === "skipped") skipped += 1;
        else failed.push({ name: shownName(f), why: UPLOAD_ERRORS[r.error] || r.message || r.error || "not added" });
      });
      done += batch.length; bar.value = done;
    }
    line.classList.remove("busy");
    line.textContent = `Done: ${done} of ${total} photos processed, ${plural(faces, "face")} found. ` +
      `${added} added, ${skipped} already in the library, ${failed.length} failed.`;
    line.className = failed.length || stopped ? "warning" : "okay";
    if (stopped) out.append(errorBox(stopped));
    if (failed.length) {
      out.append(h("div", { class: "tablewrap" }, h("table", { class: "cards", "data-testid": "upload-failures" },
        h("caption", {}, "Photos not added"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Photo"), h("th", { scope: "col" }, "Why"))),
        h("tbody", {}, failed.map((f) => h("tr", {}, h("td", { "data-label": "Photo" }, f.name), h("td", { "data-label": "Why" }, f.why)))))));
    }
  }

  // ---- search the library by photo -----------------------------------------------------------------
  function searchForm(lib) {
    const file = h("input", { type: "file", id: "lib-probe", name: "image", accept: "image/*", required: true });
    const purpose = h("input", { type: "text", id: "lib-purpose", name: "purpose", required: true, maxlength: 500, value: session.purpose });
    const caseId = h("input", { type: "text", id: "lib-case", name: "case_id", maxlength: 200, value: session.caseId });
    const button = h("button", { type: "submit" }, "Search the library");
    const out = h("section", { id: "lib-results", "aria-live": "polite", "aria-label": "Library search results" });
    const form = h("form", { class: "stack" },
      h("p", { class: "meta" }, "Find every photo in this library in which the person of a photo appears. Every search is " +
        "recorded in the audit log with its purpose (and case id), and who ran it."),
      h("label", { for: "lib-probe" }, "Photo to search with", file),
      h("div", { class: "row" },
        h("label", { for: "lib-purpose" }, "Purpose of this search", purpose, h("span", { class: "hint" }, "Why it is run. Recorded in the audit log.")),
        h("label", { for: "lib-case" }, "Case id (optional)", caseId)),
      h("div", {}, button));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!file.files.length) { out.replaceChildren(errorBox(new Error("Pick a photo first."))); return; }
      busy(button, async () => {
        out.replaceChildren(h("p", { class: "busy" }, "Finding the faces and searching the library…"));
        const data = new FormData();
        data.append("image", file.files[0]);
        data.append("purpose", purpose.value);
        session.purpose = purpose.value;
        if (caseId.value.trim()) { data.append("case_id", caseId.value.trim()); session.caseId = caseId.value.trim(); }
        try {
          const res = await api(`${base(lib.name)}/search`, { method: "POST", form: data });
          drawSearch(out, lib, res, file.files[0]);
        } catch (err) {
          out.replaceChildren(err.code === "no_face" ? h("div", { class: "nomatch", role: "alert" }, h("strong", {}, "No face found"),
            "No face was detected in this photo, so nobody was searched for. Try a sharper, frontal photo.") : errorBox(err));
        }
      });
    });
    return h("details", { class: "panel", open: role() === "searcher" }, h("summary", {}, "Search this library by photo"), form, out);
  }

  function drawSearch(out, lib, res, file) {
    const faces = [...res.faces].sort((a, b) => a.box[0] - b.box[0] || a.box[1] - b.box[1]);
    const found = faces.filter((f) => f.person !== null && f.person !== undefined);
    const probe = h("span", { class: "boxed probe-photo" });
    const img = h("img", { src: URL.createObjectURL(file), alt: "The photo searched with", class: "lib-photo" });
    probe.append(img);
    img.addEventListener("load", () => faces.forEach((f, i) => {
      const el = h("span", { class: `lib-box ${f.person ? "match" : "no_match"}`, "aria-hidden": "true" }, h("span", {}, String(i + 1)));
      const W = img.naturalWidth, H = img.naturalHeight, [x1, y1, x2, y2] = f.box;
      Object.assign(el.style, { left: `${(100 * x1) / W}%`, top: `${(100 * y1) / H}%`, width: `${(100 * (x2 - x1)) / W}%`, height: `${(100 * (y2 - y1)) / H}%` });
      probe.append(el);
    }));
    const summary = found.length
      ? `Found ${found.map((f) => f.person_label).filter((v, i, a) => a.indexOf(v) === i).join(" and ")}`
      : "Nobody in this library matches";
    out.replaceChildren(
      h("h2", { "data-testid": "lib-summary" }, summary),
      h("p", { class: "meta" }, `${plural(faces.length, "face")} in the photo. A face counts as the same person at similarity ≥ ` +
        `${fmtSim(res.threshold)}: two different people score that high ${fmrWords(res.threshold_fmr)}.`),
      h("p", { class: "meta", "data-testid": "lib-audit" }, `This search is recorded in the audit log (entry #${res.audit_seq}) ` +
        `with its purpose “${res.purpose}”${res.case_id ? ` and case ${res.case_id}` : ""}.`),
      h("div", { class: "probe-wrap" }, probe),
      ...faces.map((f, i) => searchFace(lib, res, f, i + 1, faces.length)));
  }

  function searchFace(lib, res, f, position, count) {
    const title = count > 1 ? `Face ${position} (from the left): ` : "";
    if (f.person === null || f.person === undefined) {
      return h("div", { class: "nomatch", "data-testid": "lib-no-match" },
        h("strong", {}, `${title}nobody in this library matches`),
        `No face in “${res.library}” scores similarity ≥ ${fmtSim(res.threshold)} with this face. The person may not be in ` +
        "these photos, or the photo may be too blurred or turned away.");
    }
    const photos = new Set(f.matches.map((m) => m.photo_id)).size;
    const list = h("ol", { class: "match-photos", "aria-label": `Photos of ${f.person_label}, best match first` });
    const shown = f.matches.slice(0, 200);
    shown.forEach((m, rank) => {
      const other = m.person !== f.person ? ` · grouped as ${m.person_label || "nobody"}` : "";
      list.append(h("li", { class: "match", "data-testid": "lib-match" },
        boxedPhoto(lib.name, m.photo_id, [{ box: m.box, frame: m, kind: "match" }], `${shortName(m.photo)}: ${f.person_label} boxed`),
        h("span", { class: "match-line" }, `${rank + 1}. similarity ${fmtSim(m.similarity)}`),
        h("span", { class: "meta" }, `Different people score this high ${fmrWords(m.estimated_fmr)}${other}`)));
    });
    return h("section", { class: "search-face", "data-testid": "lib-person" },
      h("h3", {}, `${title}${f.person_label}`),
      h("p", {}, `Appears in ${plural(photos, "photo")}, ranked by similarity to the face searched. `,
        link(personHref(lib.name, f.person), `Open ${f.person_label}`)),
      list, f.matches.length > shown.length ? h("p", { class: "meta" }, `The first ${shown.length} of ${f.matches.length} faces are shown.`) : null);
  }

  // ---- one person ----------------------------------------------------------------------------------
  async function personView(seq, libName, number) {
    const back = link(gridHref(libName), `← All people in ${libName}`, { class: "back" });
    main.append(h("p", {}, back));
    let libs, p, people;
    try {
      [libs, p, people] = await Promise.all([api("/api/v1/libraries"), api(`${base(libName)}/people/${enc(number)}`),
        api(`${base(libName)}/people?hidden=true`)]);
    } catch (err) {
      if (!current(seq)) return;
      main.append(heading("Person not found"), err.status === 404
        ? h("div", { class: "nomatch", role: "alert" }, h("strong", {}, "No such person"),
          "They may have been merged into someone else or erased. Go back to all people.")
        : errorBox(err));
      return;
    }
    if (!current(seq)) return;
    const lib = libs.find((l) => l.name === libName);
    store.library = libName;
    document.title = `${p.label} · People · facevault`;
    const others = people.filter((o) => o.person !== p.person);
    main.append(heading(p.label),
      h("p", { class: "meta", "data-testid": "person-counts" },
        `${plural(p.faces, "face")} in ${plural(p.photos, "photo")} · library ${libName}${p.hidden ? " · hidden from the people grid" : ""}`));
    const feature = h("div", { class: "person-head" }, faceThumb(lib, p.feature_face, `Feature face of ${p.label}`));
    const info = h("div", { class: "stack" });
    if (p.consent) {
      const c = p.consent;
      info.append(h("h2", {}, "Consent record"), h("dl", { class: "record", "data-testid": "consent-record" },
        ...[["Purpose", c.purpose], ["Given by", c.granted_by], ["Given at", `${when(c.granted_at)} UTC`],
          ["Expires", c.expires_at ? when(c.expires_at) : "never"], ["Evidence", c.evidence_kind], ["Evidence SHA-256", c.evidence_sha256]]
          .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
    } else {
      info.append(h("p", { class: "meta" }, "Not named. A name can be put on this person only with a record of their consent."));
    }
    feature.append(info);
    main.append(feature);
    if (allowed(CAN_ENROLL)) main.append(curateTools(lib, p, others));
    const photos = h("ul", { class: "person-photos", "data-testid": "person-photos" },
      p.faces_list.map((f) => personFace(lib, p, f, others)));
    main.append(h("section", { "aria-label": `Photos of ${p.label}` }, h("h2", {}, `Photos (${p.photos})`),
      p.faces_list.length ? photos : h("p", {}, "No faces left.")), zoomDialog());
  }

  function curateTools(lib, p, others) {
    const panel = h("div", { class: "stack" });
    if (!p.named) panel.append(nameForm(lib, p));
    panel.append(mergeForm(lib, p, others));
    const status = h("div", { "aria-live": "polite" });
    const hide = h("button", { type: "button", class: "secondary", onclick: (e) => busy(e.currentTarget, async () => {
      try {
        await api(`${base(lib.name)}/people/${p.person}/hide`, { method: "POST", json: { hidden: !p.hidden } });
        render();
        toast(p.hidden ? `${p.label} is shown in the people grid again.` : `${p.label} is hidden from the people grid (their faces stay).`);
      } catch (err) { status.replaceChildren(errorBox(err)); }
    }) }, p.hidden ? "Show this person again" : "Hide this person");
    const row = h("div", { class: "row buttons" }, hide);
    if (role() === "admin") row.append(eraseDialog(lib, p));
    panel.append(h("div", { class: "panel stack" }, h("h2", {}, "Hide or erase"),
      h("p", { class: "meta" }, "Hiding keeps the faces but leaves the person out of the grid." +
        (role() === "admin" ? " Erasing deletes their face data and name for good." : "")), row, status));
    return panel;
  }

  // The same consent fields and wording as the Subjects page; "given by" is required, never the name by default.
  function nameForm(lib, p) {
    const field = (id, label, attrs = {}, hint) => {
      const input = h("input", { type: "text", id, name: id, ...attrs });
      return [h("label", { for: id }, label, input, hint ? h("span", { class: "hint" }, hint) : null), input];
    };
    const [nameL, name] = field("person-name", "Name", { required: true, maxlength: 200 });
    const [purposeL, purpose] = field("consent-purpose", "Consent purpose", { required: true, maxlength: 500 },
      "What the person agreed their face may be used for.");
    const text = h("textarea", { id: "consent-text", name: "consent_text", rows: 3, required: true, maxlength: 20000 });
    const [byL, by] = field("consent-by", "Consent given by", { required: true, maxlength: 200 },
      "The person themselves, or who signed for them (e.g. a parent).");
    const [expL, expires] = field("consent-expires", "Consent expires (optional)", { type: "date" });
    const button = h("button", { type: "submit" }, "Name with consent");
    const status = h("div", { "aria-live": "polite" });
    const form = h("form", { class: "stack" }, nameL, purposeL,
      h("label", { for: "consent-text" }, "Consent text", text,
        h("span", { class: "hint" }, "What they agreed to, in their words or the form's, or where the signed form is kept.")),
      h("div", { class: "row" }, byL, expL), h("div", {}, button), status);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(button, async () => {
        try {
          const res = await api(`${base(lib.name)}/people/${p.person}/name`, { method: "POST", json: {
            name: name.value.trim(), purpose: purpose.value, consent_text: text.value, consent_by: by.value.trim(),
            expires: expires.value || null } });
          render();
          toast(`Named ${res.name}, with consent record #${res.consent_id} (audit entry #${res.audit_seq}).`);
        } catch (err) { status.replaceChildren(errorBox(err)); }
      });
    });
    return h("details", { class: "panel", open: true }, h("summary", {}, "Name this person (with consent)"), form);
  }

  function mergeForm(lib, p, others) {
    const box = h("div", { class: "panel stack" }, h("h2", {}, "Merge another person into this one"));
    if (!others.length) { box.append(h("p", { class: "meta" }, "There is nobody else in this library to merge.")); return box; }
    const select = h("select", { id: "merge-other", name: "other" }, h("option", { value: "" }, "Choose a person…"),
      others.map((o) => h("option", { value: o.person }, `${o.label} (${plural(o.photos, "photo")})${o.hidden ? ", hidden" : ""}`)));
    const preview = h("div", { class: "merge-preview", "aria-live": "polite" });
    const show = () => {
      const o = others.find((x) => String(x.person) === select.value);
      preview.replaceChildren(o ? personThumb(lib, o, `Feature face of ${o.label}`) : "");
    };
    select.addEventListener("change", show);
    show();
    const status = h("div", { "aria-live": "polite" });
    const button = h("button", { type: "button", onclick: (e) => busy(e.currentTarget, async () => {
      const o = others.find((x) => String(x.person) === select.value);
      if (!o) { status.replaceChildren(errorBox(new Error("Choose the person to merge into this one first."))); return; }
      try {
        const res = await api(`${base(lib.name)}/people/${p.person}/merge`, { method: "POST", json: { other: String(o.person) } });
        render();
        toast(`Merged ${o.label} into ${p.label}: ${plural(res.faces_moved, "face")} moved.`);
      } catch (err) { status.replaceChildren(errorBox(err)); }
    }) }, "Merge into this person");
    box.append(h("p", { class: "meta" }, "When the same person was grouped twice: their faces move here and the other entry goes away."),
      h("div", { class: "row merge-row" }, h("label", { for: "merge-other" }, "Same person as this one", select), preview),
      h("div", {}, button), status);
    return box;
  }

  function eraseDialog(lib, p) {
    const id = `erase-${p.person}`;
    const radio = (value, text, checked) => h("label", { class: "check", for: `${id}-${value}` },
      h("input", { type: "radio", id: `${id}-${value}`, name: `${id}-photos`, value, checked }), text);
    const dialog = h("dialog", { "aria-labelledby": `${id}-title` },
      h("h2", { id: `${id}-title` }, `Erase ${p.label}?`),
      h("p", {}, `This deletes ${p.label}'s ${plural(p.faces, "face")} (templates and thumbnails)` +
        `${p.named ? ", name and consent record" : ""}. It cannot be undone. The ${plural(p.photos, "photo")} they appear in ` +
        "stay in the library: a photo is not one person's alone. The audit log keeps an erasure receipt."),
      h("fieldset", { class: "stack" }, h("legend", {}, "The photos they appear in"),
        radio("keep", "Keep them as they are", true),
        radio("blur", "Keep them, with this person's face blurred in the kept copies (uploaded photos; files in the server's folders are never changed)", false),
        radio("remove", "Remove the photos from the library, for everyone in them", false)),
      h("form", { method: "dialog", class: "row" },
        h("button", { type: "submit", value: "cancel", class: "secondary" }, "Cancel"),
        h("button", { type: "submit", value: "go", class: "danger" }, "Erase permanently")));
    const status = h("div", { "aria-live": "polite" });
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "go") return;
      const photos = dialog.querySelector(`input[name="${id}-photos"]:checked`).value;
      try {
        const r = await api(`${base(lib.name)}/people/${p.person}?photos=${photos}`, { method: "DELETE" });
        go(gridHref(lib.name));
        const kept = [];
        if (r.photos_kept) kept.push(`${plural(r.photos_kept, "photo")} kept as they were`);
        if (r.photos_blurred) kept.push(`${plural(r.photos_blurred, "photo")} kept with the face blurred`);
        if (r.photos_removed) kept.push(`${plural(r.photos_removed, "photo")} removed from the library`);
        toast(`Erased ${p.label}: ${plural(r.faces_erased ?? p.faces, "face")} erased${kept.length ? `; ${kept.join(", ")}` : ""} ` +
          `(receipt: audit entry #${r.audit_seq}).`);
      } catch (err) { status.replaceChildren(errorBox(err)); }
    });
    const open = h("button", { type: "button", class: "danger", onclick: () => { dialog.returnValue = ""; dialog.showModal(); } },
      "Erase this person…");
    return h("div", {}, open, dialog, status);
  }

  function personFace(lib, p, f, others) {
    const name = shortName(f.photo);
    const isFeature = f.face_id === p.feature_face;
    const caption = h("figcaption", {}, h("span", { class: "photo-name" }, name),
      f.taken_at ? h("span", { class: "meta" }, ` · taken ${when(f.taken_at)}`) : null,
      isFeature ? h("span", { class: "badge" }, "feature face") : null);
    const item = h("li", { class: "person-photo", "data-testid": "person-photo", "data-face": f.face_id },
      h("figure", {}, boxedPhoto(lib.name, f.photo_id, [{ box: f.box, frame: f }], `${name}, ${p.label} boxed`), caption));
    if (allowed(CAN_ENROLL)) item.append(faceActions(lib, p, f, others, isFeature));
    return item;
  }

  function faceActions(lib, p, f, others, isFeature) {
    const status = h("div", { class: "meta", "aria-live": "polite" });
    const act = (work) => (e) => busy(e.currentTarget, async () => {
      try { const msg = await work(); render(); toast(msg); } catch (err) { status.replaceChildren(errorBox(err)); }
    });
    const buttons = h("div", { class: "face-actions" });
    if (!isFeature) {
      buttons.append(h("button", { type: "button", class: "secondary small", "aria-label": `Use face ${f.face_id} as the feature face`,
        onclick: act(async () => {
          await api(`${base(lib.name)}/people/${p.person}/feature`, { method: "POST", json: { face_id: f.face_id } });
          return `Face ${f.face_id} now shows ${p.label} in the people grid.`;
        }) }, "Use as feature face"));
    }
    buttons.append(h("button", { type: "button", class: "secondary small", "aria-label": `Not ${p.label}: face ${f.face_id}`,
      onclick: act(async () => {
        const r = await api(`${base(lib.name)}/people/${p.person}/remove/${f.face_id}`, { method: "POST" });
        return `Face ${f.face_id} is no longer ${p.label}: it is person #${r.now_person} now, and is never put back.`;
      }) }, "Not this person"));
    if (others.length) {
      buttons.append(h("button", { type: "button", class: "secondary small", "aria-label": `Move face ${f.face_id} to another person`,
        onclick: () => {
          const select = h("select", { id: `move-${f.face_id}`, "aria-label": `Person to move face ${f.face_id} to` },
            others.map((o) => h("option", { value: o.person }, `${o.label} (${plural(o.photos, "photo")})`)));
          const moveIt = h("button", { type: "button", class: "small", onclick: act(async () => {
            const o = others.find((x) => String(x.person) === select.value);
            await api(`${base(lib.name)}/faces/${f.face_id}/move`, { method: "POST", json: { to: String(o.person) } });
            return `Face ${f.face_id} moved to ${o.label}.`;
          }) }, "Move");
          status.replaceChildren(h("div", { class: "row move-row" }, select, moveIt));
          select.focus();
        } }, "Move…"));
    }
    return h("div", { class: "stack" }, buttons, status);
  }

  return { page };
})();
