// The technician's form with no signal. Served from /static/sw.js with
// `Service-Worker-Allowed: /q/` and registered with scope /q/, so it only
// ever controls the form pages (/q/{code}) and the home-screen start page
// (/q/home); review (/r/), status (/s/) and admin pages are outside it.
//
// What it keeps: the shell (css, js, manifest, icon, start page) and each
// form page opened online. Pages are network-first, so a withdrawn or
// expired code is honoured whenever there is a signal (its cached copy is
// dropped); the copy is only a fallback with no signal. Never kept: POST
// answers, anything under /r/ (a reviewer's one-time token is in that path),
// /s/, /admin, /dev, or any URL with a query string.
//
// VERSION is the content hash of the static files, filled in by the server:
// a deploy that changes any of them changes this script, so the browser
// installs the new worker, which drops the old shell. The form pages live in
// a cache of their own that a deploy keeps (a technician offline after a
// deploy still has the equipment scanned before); the new worker refreshes
// those pages from the network as it starts, online by definition.
"use strict";
var VERSION = "__FIELDGATE_STATIC_VERSION__";
var CACHE = "fieldgate-shell-" + VERSION;
var PAGES = "fieldgate-pages";
var SHELL = ["/q/home", "/static/app.css", "/static/app.js", "/static/manifest.webmanifest", "/static/icon.svg"];

// Only these are ever put in the cache: the form pages and the shell.
function cacheable(url) {
  if (url.origin !== self.location.origin || url.search) return false;
  // Explicit: review links carry the reviewer's token in the path.
  if (/^\/(r|s|admin|dev|mcp)(\/|$)/.test(url.pathname)) return false;
  return /^\/q\/[A-Za-z0-9._~-]+$/.test(url.pathname) || SHELL.indexOf(url.pathname) >= 0;
}

self.addEventListener("install", function (ev) {
  // "reload": past the HTTP cache, so a deploy never mixes old and new files.
  ev.waitUntil(caches.open(CACHE).then(function (c) {
    return c.addAll(SHELL.map(function (u) { return new Request(u, { cache: "reload" }); }));
  }).then(function () {
    return self.skipWaiting();
  }));
});

self.addEventListener("activate", function (ev) {
  ev.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) {
      return n.indexOf("fieldgate-shell-") === 0 && n !== CACHE;
    }).map(function (n) { return caches.delete(n); }));
  }).then(function () { return self.clients.claim(); }).then(refreshPages));
});

// The kept form pages, fetched again with the new shell (a page whose
// code was withdrawn meanwhile is dropped by `remember`).
function refreshPages() {
  return caches.open(PAGES).then(function (c) { return c.keys(); }).then(function (keys) {
    return Promise.all(keys.map(function (k) {
      return fetch(k.url).then(function (resp) { return remember(k, resp); }, function () {});
    }));
  });
}

// Form pages go in PAGES, the shell in the versioned CACHE.
function cacheFor(path) { return SHELL.indexOf(path) >= 0 ? CACHE : PAGES; }

// A good answer to a GET of a form page: a copy goes in the cache. A 404 or
// 410 (bad, withdrawn or expired code) removes the copy. Resolves when done.
function remember(req, resp) {
  var url = new URL(req.url);
  if (req.method !== "GET" || !cacheable(url)) return Promise.resolve();
  if (resp.status === 200 && resp.type === "basic") {
    var copy = resp.clone();
    return caches.open(cacheFor(url.pathname)).then(function (c) { return c.put(url.pathname, copy); });
  }
  if (resp.status === 404 || resp.status === 410) {
    return caches.open(PAGES).then(function (c) { return c.delete(url.pathname); });
  }
  return Promise.resolve();
}

function offlinePage() {
  return caches.match("/q/home").then(function (home) {
    return home || new Response("<!doctype html><title>No signal</title><p>No signal, and this page was not saved on this phone.", {
      status: 503, headers: { "content-type": "text/html; charset=utf-8" }
    });
  });
}

self.addEventListener("fetch", function (ev) {
  var req = ev.request;
  // POSTs (reports, decisions) always go to the network, never cached.
  if (req.method !== "GET") return;
  var url = new URL(req.url);
  if (!cacheable(url)) return;
  if (req.mode === "navigate" || /^\/q\//.test(url.pathname)) {
    ev.respondWith(fetch(req).then(function (resp) {
      ev.waitUntil(remember(req, resp));
      return resp;
    }, function () {
      return caches.match(url.pathname).then(function (hit) { return hit || offlinePage(); });
    }));
    return;
  }
  // The static files: versioned with the cache, so the cache is right.
  ev.respondWith(caches.match(url.pathname).then(function (hit) {
    return hit || fetch(req);
  }));
});

// The page that registered us asks for its own copy: the first visit to a
// form happens before the worker controls the page, so it was not seen.
self.addEventListener("message", function (ev) {
  var data = ev.data || {};
  if (data.type !== "visited" || typeof data.path !== "string") return;
  var url = new URL(data.path, self.location.origin);
  if (!cacheable(url) || !/^\/q\//.test(url.pathname)) return;
  ev.waitUntil(caches.open(PAGES).then(function (c) {
    return c.match(url.pathname).then(function (hit) {
      if (hit) return;
      return fetch(url.pathname).then(function (resp) { return remember(new Request(url.href), resp); });
    });
  }).catch(function () { /* no signal: kept next time */ }));
});
