// Keliling bus station: conveniences over pages that work without this file.
// Loaded as a file from the station itself (the CSP allows no inline script).
"use strict";
const $ = (s, el = document) => el.querySelector(s);
const $$ = (s, el = document) => Array.from(el.querySelectorAll(s));

// The screen locked (idle, or another operator took over): to the PIN screen.
function locked(r) {
  if (r.status === 401 || (r.redirected && r.url.includes("/login"))) {
    location.href = "/login";
    return true;
  }
  return false;
}

function post(url, form, keepalive = false) {
  return fetch(url, {
    method: "POST",
    body: new URLSearchParams(new FormData(form)),
    headers: { "X-Requested-With": "fetch" },
    credentials: "same-origin",
    keepalive,
  }).then((r) => { locked(r); return r; });
}

// The form of a draft: saved on the bus as the operator types, messages beside fields.
function autosave(form) {
  const note = $("#saved-note");
  let timer = null, busy = false, again = false;
  const show = (res) => {
    for (const p of $$("[data-for]", form)) p.textContent = "";
    for (const f of $$(".field", form)) f.classList.remove("bad");
    for (const m of res.problems) {
      const p = $(`[data-for="${CSS.escape(m.field)}"]`, form);
      if (p) { p.textContent = m.text; p.closest(".field").classList.add("bad"); }
    }
    for (const w of $$("[data-warn-for]", form)) w.textContent = "";
    for (const m of res.warnings) {
      const w = $(`[data-warn-for="${CSS.escape(m.field)}"]`, form);
      if (w) w.textContent += m.text + " ";
    }
    if (note && res.saved_note) note.textContent = res.saved_note;
  };
  const send = () => {
    if (busy) { again = true; return; }
    busy = true;
    post(form.dataset.autosave, form).then((r) => r.ok ? r.json() : null).then((res) => {
      if (res) show(res);
    }).catch(() => {}).finally(() => { busy = false; if (again) { again = false; send(); } });
  };
  const soon = () => { clearTimeout(timer); timer = setTimeout(send, 400); };
  form.addEventListener("input", (e) => { e.target.closest(".field")?.classList.add("touched"); soon(); });
  form.addEventListener("change", (e) => { e.target.closest(".field")?.classList.add("touched"); soon(); });
  form.addEventListener("focusout", (e) => { if (e.target.value && e.target.type !== "radio") e.target.closest(".field")?.classList.add("touched"); });
  // Fields that hold something already (a reopened draft) show their messages at once.
  for (const f of $$(".field", form)) {
    const text = $("input:not([type=radio]):not([type=checkbox]), select", f);
    if ((text && text.value) || $("input:checked", f)) f.classList.add("touched");
  }
  // Leaving the page (the photo, the save, a reload) sends what was typed, even while
  // another save is on its way, and survives the page going away.
  window.addEventListener("pagehide", () => { clearTimeout(timer); post(form.dataset.autosave, form, true).catch(() => {}); });
  return send;
}

// The live camera where the browser allows it (HTTPS or localhost): a preview with a
// face guide; the shot goes through the same upload as a file.
function liveCamera(form) {
  const start = $("#camera-start"), box = $("#camera"), video = $("#camera-video");
  if (!start || !navigator.mediaDevices?.getUserMedia || !window.isSecureContext) return;
  start.hidden = false;
  start.addEventListener("click", async () => {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: { ideal: 1920 } } });
      video.srcObject = stream; await video.play(); box.hidden = false; start.hidden = true;
      $("#camera-shoot").addEventListener("click", () => {
        const c = document.createElement("canvas");
        c.width = video.videoWidth; c.height = video.videoHeight;
        c.getContext("2d").drawImage(video, 0, 0);
        c.toBlob((blob) => {
          stream.getTracks().forEach((t) => t.stop());
          const dt = new DataTransfer();
          dt.items.add(new File([blob], "camera.jpg", { type: "image/jpeg" }));
          $("#photo-file").files = dt.files;
          form.requestSubmit();
        }, "image/jpeg", 0.92);
      });
    } catch (e) { start.hidden = true; }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const form = $("#app-form");
  const flush = form ? autosave(form) : null;
  // Saving sends the form's current fields along.
  const save = $("#save-form");
  if (save && form) {
    save.addEventListener("submit", () => {
      for (const [k, v] of new FormData(form)) {
        if (k === "csrf") continue;
        const i = document.createElement("input");
        i.type = "hidden"; i.name = k; i.value = v; save.appendChild(i);
      }
    });
  }
  for (const el of $$(".autosubmit")) {
    el.addEventListener("change", () => { if (flush) flush(); el.form && el.form.requestSubmit(); });
  }
  const photoForm = $("#photo-form");
  if (photoForm) liveCamera(photoForm);
  for (const f of $$("form.confirm")) {
    f.addEventListener("submit", (e) => { if (!confirm(f.dataset.confirm)) e.preventDefault(); });
  }
  // Forms that change something are sent once, even on a double tap (not when a
  // confirmation was declined); back/forward navigation brings the buttons back.
  for (const f of $$("form[method=post]")) {
    f.addEventListener("submit", (e) => {
      if (e.defaultPrevented) return;
      setTimeout(() => $$("button", f).forEach((b) => (b.disabled = true)), 0);
    });
  }
  window.addEventListener("pageshow", () => $$("form[method=post] button").forEach((b) => (b.disabled = false)));
  const print = $("#print");
  if (print) print.addEventListener("click", () => window.print());
  // Services: search as you type, without a round trip.
  const search = $("#service-search");
  if (search) {
    const items = $$(".service");
    const count = $("#service-count"), none = $("#no-service");
    search.addEventListener("input", () => {
      const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
      let shown = 0;
      for (const it of items) {
        const ok = words.every((w) => it.dataset.search.includes(w));
        it.hidden = !ok; if (ok) shown++;
      }
      for (const g of $$(".agency")) g.hidden = !$$(".service", g).some((s) => !s.hidden);
      if (count) count.textContent = count.textContent.replace(/^\d+/, String(shown));
      if (none) none.hidden = shown > 0;
    });
    search.form.addEventListener("submit", (e) => {
      const first = items.find((s) => !s.hidden);
      if (first) { e.preventDefault(); first.requestSubmit(first.querySelector("button")); }
    });
  }
  // The banner follows the sync; today's list reloads when a state changes.
  const banner = $("#banner");
  if (banner) {
    let stamp = null;
    const today = $("#reload-on-change");
    setInterval(() => {
      fetch("/status.json", { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then((r) => (locked(r) || !r.ok ? null : r.json()))
        .then((s) => {
          if (!s) return;
          banner.classList.toggle("online", s.banner.online);
          banner.classList.toggle("offline", !s.banner.online);
          $("#banner-link").textContent = s.link;
          $("#banner-waiting").textContent = s.waiting;
          const p = $("#banner-progress");
          if (p && s.banner.progress != null) p.value = s.banner.progress;
          if (today && stamp && stamp !== s.stamp) location.reload();
          stamp = s.stamp;
        }).catch(() => {});
    }, 3000);
  }
});
