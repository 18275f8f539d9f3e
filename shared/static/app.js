// Progressive enhancement only: every page works without this file.
// Field form: photos shrunk + previewed (several, up to the workflow's
// limit), upload progress, an offline outbox (IndexedDB) that sends saved
// reports on every page load and when the signal returns (no Background
// Sync: iOS has none), and the service worker (/static/sw.js) that keeps
// the form pages so they open with no signal.
// Review page: length counters, what-you-changed summary, reject reason,
// the approve button held until every "needs your eyes" field is ticked.
"use strict";
(function () {
  var MAX_SIDE = 1600;
  var RETRY_MS = 8000;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function kb(n) {
    return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(n / 1024)) + " KB";
  }
  function when(ts) {
    var d = new Date(ts);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // ------------------------------------------------------ length counters
  function counters(root) {
    root.querySelectorAll("textarea[maxlength], input[type=text][maxlength]").forEach(function (input) {
      var max = parseInt(input.getAttribute("maxlength"), 10);
      if (!max || max > 5000) return;
      var out = el("p", "counter");
      out.id = input.id + "-count";
      var described = input.getAttribute("aria-describedby");
      input.setAttribute("aria-describedby", (described ? described + " " : "") + out.id);
      function update() {
        var n = input.value.length;
        out.textContent = n + " / " + max + " characters";
        out.classList.toggle("near", n > max * 0.9);
      }
      input.insertAdjacentElement("afterend", out);
      input.addEventListener("input", update);
      update();
    });
  }

  // ------------------------------------------------------ offline outbox
  var DB_NAME = "fieldgate", STORE = "outbox";
  var memory = {}; // used when IndexedDB is unavailable (private mode)

  function openDb() {
    return new Promise(function (resolve, reject) {
      if (!window.indexedDB) { reject(new Error("no IndexedDB")); return; }
      var r = indexedDB.open(DB_NAME, 1);
      r.onupgradeneeded = function () { r.result.createObjectStore(STORE, { keyPath: "idem" }); };
      r.onsuccess = function () { resolve(r.result); };
      r.onerror = function () { reject(r.error); };
    });
  }
  function withStore(mode, fn) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var t = db.transaction(STORE, mode);
        var req = fn(t.objectStore(STORE));
        t.oncomplete = function () { db.close(); resolve(req ? req.result : undefined); };
        t.onerror = t.onabort = function () { db.close(); reject(t.error); };
      });
    });
  }
  var outbox = {
    put: function (r) {
      return withStore("readwrite", function (s) { return s.put(r); })
        .then(function () { return true; }, function () { memory[r.idem] = r; return false; });
    },
    all: function () {
      var mem = Object.keys(memory).map(function (k) { return memory[k]; });
      return withStore("readonly", function (s) { return s.getAll(); })
        .then(function (list) { return (list || []).concat(mem); }, function () { return mem; });
    },
    del: function (idem) {
      delete memory[idem];
      return withStore("readwrite", function (s) { return s.delete(idem); }).catch(function () {});
    }
  };

  // A saved report's photos: `photos: [{blob, name}]`; reports saved by an
  // earlier version of this page have one `photo` (+ `photoName`).
  function photosOf(r) {
    if (r.photos) return r.photos;
    return r.photo ? [{ blob: r.photo, name: r.photoName }] : [];
  }

  // One report, sent as the plain form would send it. The idem key makes a
  // resend of the same report land on the same proposal.
  function send(r, progress) {
    return new Promise(function (resolve, reject) {
      var fd = new FormData();
      fd.append("idem", r.idem);
      fd.append("notes", r.notes);
      fd.append("reporter", r.reporter || "");
      // The asset context the form was shown with, as the server signed
      // it; a report kept too long (or saved by an earlier version of this
      // page, without one) has the server look the asset up again.
      if (r.context) fd.append("context", r.context);
      photosOf(r).forEach(function (p) { fd.append("photo", p.blob, p.name || "photo.jpg"); });
      var x = new XMLHttpRequest();
      x.open("POST", r.url);
      x.timeout = 90000; // then it is kept and retried like any failed send
      if (progress) {
        x.upload.onprogress = function (e) { if (e.lengthComputable) progress(e.loaded / e.total); };
      }
      x.onload = function () { resolve({ status: x.status, html: x.responseText }); };
      x.onerror = x.ontimeout = x.onabort = function () { reject(new Error("network")); };
      x.send(fd);
    });
  }
  // Worth another try later: our failures, gateways, rate limits.
  function retryable(status) { return status === 0 || status === 408 || status === 429 || status >= 500; }
  function ok(status) { return status >= 200 && status < 300; }

  function parse(html) { return new DOMParser().parseFromString(html, "text/html"); }
  function messageOf(html) {
    var doc = parse(html);
    var p = doc.querySelector("main p");
    var h = doc.querySelector("main h1");
    return (h ? h.textContent + ": " : "") + (p ? p.textContent : "The report was not accepted.");
  }
  // Shows a page the server answered with (same origin, already escaped)
  // in place of the current one.
  function showPage(html) {
    var doc = parse(html);
    var main = doc.querySelector("main");
    if (!main) { location.reload(); return; }
    document.title = doc.title;
    document.querySelector("main").replaceWith(document.adoptNode(main));
    var h1 = document.querySelector("main h1");
    if (h1) { h1.setAttribute("tabindex", "-1"); h1.focus(); }
    window.scrollTo(0, 0);
  }

  var flushing = false, timer = null, onSent = null;
  // While a form shows its own "saved" notice, its report is not listed twice.
  function currentIdem() {
    var f = $("intake");
    return f && f.hidden && f.elements.idem ? f.elements.idem.value : null;
  }
  function schedule() {
    if (!timer) timer = setTimeout(function () { timer = null; flush(); }, RETRY_MS);
  }
  function flush() {
    if (flushing) return Promise.resolve();
    flushing = true;
    return outbox.all().then(function (list) {
      return list.reduce(function (chain, r) {
        return chain.then(function () {
          return send(r).then(function (res) {
            if (ok(res.status)) {
              return outbox.del(r.idem).then(function () { sent(r, res.html); });
            }
            if (retryable(res.status)) { schedule(); return; }
            return outbox.del(r.idem).then(function () { refused(r, res.html); });
          }, function () { schedule(); });
        });
      }, Promise.resolve());
    }).then(function () { flushing = false; }, function () { flushing = false; schedule(); })
      .then(function () { return showWaiting(currentIdem()); });
  }
  function banner(cls) {
    var b = el("section", "card saved " + cls);
    b.setAttribute("role", "status");
    var main = document.querySelector("main");
    main.insertBefore(b, main.firstChild);
    return b;
  }
  function sent(r, html) {
    if (onSent && onSent(r, html)) return;
    var b = banner("sent");
    b.appendChild(el("h2", "", "Saved report sent"));
    b.appendChild(el("p", "", "Your report for " + (r.asset || "the asset") + " from " + when(r.savedAt) + " has been sent."));
    var link = parse(html).querySelector('a[href^="/s/"]');
    if (link) {
      var a = el("a", "", "Check its status");
      a.href = link.getAttribute("href");
      b.appendChild(a);
    }
  }
  function refused(r, html) {
    var b = banner("");
    b.appendChild(el("h2", "", "A saved report was not accepted"));
    b.appendChild(el("p", "", messageOf(html)));
    b.appendChild(el("p", "fine", "Your notes, so you can send them again:"));
    b.appendChild(el("blockquote", "notes", r.notes));
  }
  window.addEventListener("online", function () { flush(); });

  // The reports still in the outbox, on the technician's pages (the one the
  // current form just saved is shown by its own notice, `except`).
  function showWaiting(except) {
    var main = document.querySelector("main");
    if (!main) return Promise.resolve();
    return outbox.all().then(function (list) {
      list = list.filter(function (r) { return r.idem !== except; });
      var box = $("waiting");
      if (!list.length) { if (box) box.remove(); return; }
      if (!box) {
        box = el("section", "card saved waiting");
        box.id = "waiting";
        box.setAttribute("role", "status");
        var after = main.querySelector(".card");
        if (after) after.insertAdjacentElement("afterend", box); else main.insertBefore(box, main.firstChild);
      }
      box.textContent = "";
      box.appendChild(el("h2", "", list.length === 1 ? "1 report waiting to be sent" : list.length + " reports waiting to be sent"));
      var ul = el("ul");
      list.sort(function (a, b) { return a.savedAt - b.savedAt; }).forEach(function (r) {
        var n = (r.notes || "").replace(/\s+/g, " ");
        ul.appendChild(el("li", "", (r.asset || "Report") + ", saved " + when(r.savedAt) + ": " + (n.length > 60 ? n.slice(0, 60) + "…" : n)));
      });
      box.appendChild(ul);
      box.appendChild(el("p", "fine", "Kept on this phone; sent automatically when there is a connection."));
    });
  }

  // ------------------------------------------------------ no signal: the worker
  // Registered from the technician's pages only (scope /q/: forms and the
  // start page); a form page asks it to keep a copy of itself, since the
  // first visit happens before the worker controls the page.
  function worker(isForm) {
    if (!("serviceWorker" in navigator) || location.pathname.indexOf("/q/") !== 0) return;
    navigator.serviceWorker.register("/static/sw.js", { scope: "/q/" }).catch(function () { /* no worker: online only */ });
    if (!isForm) return;
    navigator.serviceWorker.ready.then(function (reg) {
      if (reg.active) reg.active.postMessage({ type: "visited", path: location.pathname });
    });
  }
  // A key of the browser's own (16-64 of [A-Za-z0-9_-], as the server wants).
  function freshIdem() {
    var c = window.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    if (!c || !c.getRandomValues) return null;
    var a = new Uint8Array(16);
    c.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  // Equipment opened on this phone, for the start page (newest first).
  var RECENT = "fieldgate.recent";
  function recentList() {
    try { return JSON.parse(localStorage.getItem(RECENT) || "[]"); } catch (e) { return []; }
  }
  function rememberVisit(asset) {
    var list = recentList().filter(function (x) { return x.path !== location.pathname; });
    list.unshift({ path: location.pathname, asset: asset, at: Date.now() });
    try { localStorage.setItem(RECENT, JSON.stringify(list.slice(0, 12))); } catch (e) { /* blocked */ }
  }
  // The start page: the equipment whose form this phone still has.
  function home() {
    var box = $("recent"), ul = $("recent-list");
    if (!box || !ul) return;
    var list = recentList();
    var kept = window.caches
      ? Promise.all(list.map(function (x) { return caches.match(x.path).then(function (hit) { return hit ? x : null; }, function () { return x; }); }))
      : Promise.resolve(list);
    kept.then(function (items) {
      items = items.filter(Boolean);
      ul.textContent = "";
      items.forEach(function (x) {
        var li = el("li"), a = el("a");
        a.href = x.path;
        a.appendChild(el("span", "", x.asset || "Equipment"));
        a.appendChild(el("span", "fine", "opened " + new Date(x.at).toLocaleDateString()));
        li.appendChild(a);
        ul.appendChild(li);
      });
      box.hidden = items.length === 0;
    });
  }

  // ------------------------------------------------------ field form
  function shrink(file) {
    if (!window.createImageBitmap) return Promise.reject(new Error("old browser"));
    return createImageBitmap(file, { imageOrientation: "from-image" }).then(function (bmp) {
      var scale = Math.min(1, MAX_SIDE / Math.max(bmp.width, bmp.height));
      var w = Math.max(1, Math.round(bmp.width * scale)), h = Math.max(1, Math.round(bmp.height * scale));
      var c = el("canvas");
      c.width = w; c.height = h;
      var ctx = c.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, w, h);
      ctx.drawImage(bmp, 0, 0, w, h);
      if (bmp.close) bmp.close();
      // Re-encoding also drops the EXIF block (location) from the photo.
      return new Promise(function (resolve, reject) {
        c.toBlob(function (b) { if (b) resolve({ blob: b, w: w, h: h }); else reject(new Error("encode")); }, "image/jpeg", 0.85);
      });
    });
  }

  function intakeForm(form) {
    var notes = $("notes"), reporter = $("reporter"), input = $("photo"), button = $("send");
    var progress = $("progress"), bar = $("progress-bar"), label = $("progress-label");
    var saved = $("saved"), error = $("send-error");
    var asset = ($("asset-name") || {}).textContent || "";
    // The photos as they will be sent, in the order they were added; each
    // is shrunk as it is added (`ready` settles when it is).
    var photos = [], busy = false;
    // Each opening of the form gets its own key: the page may be the
    // worker's copy, whose key an earlier report already used (the server
    // would take a new report with it for that one). A resend of one report
    // keeps its key (the outbox stores it).
    function renew() { var k = freshIdem(); if (k) form.elements.idem.value = k; }
    renew();
    window.addEventListener("pageshow", function (e) { if (e.persisted && !busy) renew(); });
    rememberVisit(asset);
    // The phone remembers who the technician is, so the next report is quicker.
    try {
      if (reporter && !reporter.value) reporter.value = localStorage.getItem("fieldgate.reporter") || "";
    } catch (e) { /* storage blocked: nothing to prefill */ }

    if (input) {
      var group = input.closest(".photo-group");
      var max = parseInt(group.getAttribute("data-max"), 10) || 1;
      var list = $("photo-list"), count = $("photo-count");
      // A big camera button instead of the browser's file widget; the input
      // stays focusable (visually hidden) and the button is its click target.
      var pick = $("photo-pick"), pickText = $("photo-pick-text");
      input.classList.add("sr");
      pick.hidden = false;
      pick.addEventListener("click", function () { if (photos.length < max) input.click(); });
      var render = function () {
        list.hidden = photos.length === 0;
        var full = photos.length >= max;
        pickText.textContent = full ? "Photo limit reached" : photos.length ? "Add another photo" : "Take or choose a photo";
        pick.classList.toggle("disabled", full);
        input.disabled = full;
        count.hidden = photos.length === 0;
        count.textContent = photos.length + " of " + max + (max === 1 ? " photo" : " photos");
        photos.forEach(function (p, i) {
          p.remove.textContent = "Remove photo " + (i + 1);
          p.img.alt = "Preview of photo " + (i + 1);
        });
      };
      var add = function (file) {
        var li = el("li", "preview"), img = el("img"), box = el("div"), info = el("p", "fine photo-info", "Preparing photo…");
        var remove = el("button", "quiet");
        remove.type = "button";
        box.appendChild(info);
        box.appendChild(remove);
        li.appendChild(img);
        li.appendChild(box);
        list.appendChild(li);
        var p = { blob: null, name: (file.name || "photo").replace(/\.[^.]*$/, "") + ".jpg", li: li, img: img, remove: remove };
        p.ready = shrink(file).then(function (s) {
          p.blob = s.blob;
          img.src = URL.createObjectURL(s.blob);
          info.textContent = s.w + " × " + s.h + " · " + kb(s.blob.size) + (s.blob.size < file.size ? " (was " + kb(file.size) + ")" : "");
        }, function () {
          // Cannot decode here (e.g. HEIC): send the file as it is.
          p.blob = file;
          p.name = file.name || "photo";
          info.textContent = (file.name || "Photo") + " · " + kb(file.size) + " · sent as it is";
        });
        remove.addEventListener("click", function () {
          var i = photos.indexOf(p);
          if (i < 0) return;
          photos.splice(i, 1);
          if (img.src) URL.revokeObjectURL(img.src);
          li.remove();
          render();
          var next = photos[i] || photos[i - 1];
          (next ? next.remove : input).focus();
        });
        photos.push(p);
      };
      input.addEventListener("change", function () {
        var files = Array.prototype.slice.call(input.files || []);
        var room = max - photos.length;
        files.slice(0, room).forEach(add);
        render();
        if (files.length > room) count.textContent += " (only " + max + " can be sent; the rest were left out)";
        // The list is what is sent: the input is free for the next pick.
        input.value = "";
      });
    }

    function setProgress(f) {
      progress.hidden = false;
      bar.value = Math.round(f * 100);
      label.textContent = f >= 1 ? "Sent, waiting for the answer…" : "Sending… " + Math.round(f * 100) + "%";
    }
    function idle() {
      busy = false;
      button.disabled = false;
      button.textContent = "Send report";
      progress.hidden = true;
    }
    function keep(r) {
      return outbox.put(r).then(function (persisted) {
        form.hidden = true;
        error.hidden = true;
        saved.hidden = false;
        saved.textContent = "";
        saved.appendChild(el("h2", "", "No signal: report saved on this phone"));
        saved.appendChild(el("p", "", persisted
          ? "Your notes" + (photosOf(r).length > 1 ? " and photos are" : photosOf(r).length ? " and photo are" : " are") + " kept on this phone. They will be sent automatically as soon as there is a connection. You can keep this page open, or open any fieldgate link later."
          : "Your report could not be sent yet. Keep this page open: it is sent automatically when the connection is back."));
        saved.appendChild(el("p", "fine", "Saved at " + when(r.savedAt) + "."));
        var again = el("button", "secondary", "Try again now");
        again.type = "button";
        again.addEventListener("click", function () { flush(); });
        saved.appendChild(again);
        saved.focus();
        schedule();
        showWaiting(r.idem);
      });
    }
    onSent = function (r, html) {
      if (r.idem !== form.elements.idem.value) return false;
      showPage(html);
      return true;
    };

    form.addEventListener("submit", function (ev) {
      if (!window.FormData || !window.XMLHttpRequest || !window.DOMParser) return; // plain post
      ev.preventDefault();
      if (busy) return;
      busy = true;
      button.disabled = true;
      button.textContent = "Sending…";
      error.hidden = true;
      try { if (reporter) localStorage.setItem("fieldgate.reporter", reporter.value.trim()); } catch (e) { /* blocked */ }
      Promise.all(photos.map(function (p) { return p.ready; })).then(function () {
        var r = {
          idem: form.elements.idem.value,
          url: form.action,
          notes: notes.value,
          reporter: reporter ? reporter.value : "",
          context: form.elements.context ? form.elements.context.value : "",
          photos: photos.map(function (p) { return { blob: p.blob, name: p.name }; }),
          asset: asset,
          savedAt: Date.now()
        };
        if (navigator.onLine === false) return keep(r);
        setProgress(0);
        return send(r, setProgress).then(function (res) {
          if (ok(res.status)) { showPage(res.html); return; }
          if (retryable(res.status)) return keep(r);
          idle();
          error.textContent = messageOf(res.html);
          error.hidden = false;
          error.scrollIntoView({ block: "center" });
        }, function () { return keep(r); });
      });
    });
  }

  // ------------------------------------------------------ review page
  function norm(v) { return v.replace(/\r\n/g, "\n").trim(); }

  function reviewForm(form) {
    var fields = Array.prototype.slice.call(form.querySelectorAll(".field[data-proposed]"));
    var summary = $("changes"), approve = $("approve"), reason = $("reason");
    var submitted = false;

    function update() {
      var changed = [];
      fields.forEach(function (f) {
        var input = f.querySelector("input:not(.confirm), select, textarea");
        var was = f.getAttribute("data-proposed");
        var is = norm(input.value) !== norm(was);
        f.classList.toggle("changed", is);
        f.querySelector(".was").hidden = !is;
        if (is) changed.push({ label: f.getAttribute("data-label"), was: was, now: input.value });
      });
      ticks(changed);
      summary.hidden = false;
      summary.textContent = "";
      summary.classList.toggle("none", changed.length === 0);
      if (!changed.length) {
        summary.textContent = "No changes: approving writes the proposal as shown.";
        approve.textContent = "Approve and write to Salesforce";
        return;
      }
      summary.appendChild(el("strong", "", "You changed " + changed.length + (changed.length === 1 ? " field:" : " fields:")));
      var ul = el("ul");
      changed.forEach(function (c) {
        var li = el("li");
        li.appendChild(el("span", "", c.label + ": "));
        li.appendChild(el("del", "", c.was || "(empty)"));
        li.appendChild(document.createTextNode(" → "));
        li.appendChild(el("strong", "", norm(c.now) || "(empty)"));
        ul.appendChild(li);
      });
      summary.appendChild(ul);
      approve.textContent = "Approve with " + changed.length + (changed.length === 1 ? " change" : " changes");
    }
    // The server refuses an approval without every tick (a changed field
    // counts as checked); holding the button says so before the round trip.
    var boxes = Array.prototype.slice.call(form.querySelectorAll("input.confirm"));
    var tickHint = el("p", "fine hint");
    tickHint.id = "tick-hint";
    tickHint.hidden = true;
    approve.insertAdjacentElement("beforebegin", tickHint);
    function ticks(changed) {
      var labels = changed.map(function (c) { return c.label; });
      var open = boxes.filter(function (b) {
        var f = b.closest(".field");
        return !b.checked && labels.indexOf(f.getAttribute("data-label")) < 0;
      });
      approve.disabled = open.length > 0;
      tickHint.hidden = open.length === 0;
      tickHint.textContent = open.length === 1
        ? "Tick the field under \u201cNeeds your eyes\u201d to approve."
        : "Tick the " + open.length + " fields under \u201cNeeds your eyes\u201d to approve.";
    }
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();

    var hint = el("p", "flag", "Please say why you reject the report.");
    hint.id = "reason-hint";
    hint.hidden = true;
    reason.insertAdjacentElement("beforebegin", hint);
    form.addEventListener("submit", function (ev) {
      if (submitted) { ev.preventDefault(); return; }
      if (ev.submitter && ev.submitter.value === "reject" && !reason.value.trim()) {
        ev.preventDefault();
        hint.hidden = false;
        reason.setAttribute("aria-describedby", "reason-hint");
        reason.focus();
        return;
      }
      submitted = true;
    });
  }

  document.documentElement.classList.add("js");
  var counted = $("review");
  if (counted) counters(counted);
  var intake = $("intake");
  if (intake) intakeForm(intake);
  var review = $("review");
  if (review) reviewForm(review);
  worker(!!intake);
  home();
  // Any technician's page shows and sends what an earlier visit saved
  // offline (the reviewer's page has nothing to send).
  if (window.indexedDB && !review) showWaiting(null).then(flush, flush);
})();
