// Fleet page: refreshes the counts and the table every few seconds without
// moving the scroll position or the keyboard focus, and moves between table
// rows with the arrow keys. The focus lands on each row's deployment link, so
// Enter opens the deployment as any link does.
"use strict";
(function () {
  const root = document.querySelector("[data-fleet]");
  if (!root) { return; }
  const every = Number(root.getAttribute("data-refresh-ms")) || 5000;

  // The row links, in table order.
  function rowLinks() {
    return Array.from(document.querySelectorAll("#deployments tr[data-deployment] a.dep-link"));
  }

  // ---- Keyboard: ArrowDown/ArrowUp (and j/k) move between rows.
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) { return; }
    const t = e.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) { return; }
    const down = e.key === "ArrowDown" || e.key === "j";
    const up = e.key === "ArrowUp" || e.key === "k";
    if (!down && !up) { return; }
    const links = rowLinks();
    if (links.length === 0) { return; }
    const row = t instanceof Element ? t.closest("#deployments tr[data-deployment]") : null;
    let i = row ? links.findIndex(function (a) { return a.closest("tr") === row; }) : -1;
    if (i < 0) {
      // Outside the table the arrows scroll the page as usual, unless nothing
      // has the focus (or the key is j): then ArrowDown enters the first row.
      const idle = t === document.body || t === document.documentElement || (t instanceof HTMLElement && t.id === "main");
      if (!down || !(idle || e.key === "j")) { return; }
    }
    const next = Math.min(links.length - 1, Math.max(0, i + (down ? 1 : -1)));
    e.preventDefault();
    links[next].focus();
    const r = links[next].closest("tr").getBoundingClientRect();
    if (r.top < 80 || r.bottom > window.innerHeight) { links[next].closest("tr").scrollIntoView({ block: "nearest" }); }
  });
  // ---- Live refresh: fetch the same URL with fragment=table and swap the
  // parts by id. The focused row's link gets the focus back after the swap.
  let busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    const u = new URL(window.location.href);
    u.searchParams.set("fragment", "table");
    fetch(u.toString(), { headers: { "Periscope-Fragment": "table" }, credentials: "same-origin", cache: "no-store" })
      .then(function (res) {
        // A sign-out or an expired session answers the login page: reload to show it.
        if (res.redirected || !res.ok) { throw new Error("status " + res.status); }
        return res.text();
      })
      .then(function (html) { swap(html); })
      .catch(function () { /* the next tick tries again; the page keeps what it shows */ })
      .finally(function () { busy = false; });
  }

  function swap(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const live = doc.getElementById("fleet-live");
    if (!live) { return; }
    const wasEmpty = document.getElementById("fleet-empty") !== null;
    if (String(wasEmpty) !== live.getAttribute("data-empty")) { window.location.reload(); return; }
    // Remember what has the focus: a row's link (by deployment and href) or
    // anything else outside the swapped parts, which is left alone.
    const active = document.activeElement;
    let focusRow = null, focusHref = null, focusCount = null;
    if (active instanceof HTMLAnchorElement) {
      const tr = active.closest("tr[data-deployment]");
      if (tr && tr.closest("#fleet-rows")) { focusRow = tr.getAttribute("data-deployment"); focusHref = active.getAttribute("href"); }
      if (active.closest("#fleet-overview")) { focusHref = active.getAttribute("href"); focusCount = true; }
    }
    const x = window.scrollX, y = window.scrollY;
    ["fleet-asof", "fleet-overview", "fleet-rows", "fleet-pager"].forEach(function (id) {
      const now = document.getElementById(id), fresh = doc.getElementById(id);
      if (now && fresh) { now.replaceWith(document.importNode(fresh, true)); }
    });
    if (focusRow !== null) {
      const tr = Array.from(document.querySelectorAll("#fleet-rows tr[data-deployment]")).find(function (r) { return r.getAttribute("data-deployment") === focusRow; });
      const a = tr && (Array.from(tr.querySelectorAll("a")).find(function (l) { return l.getAttribute("href") === focusHref; }) || tr.querySelector("a.dep-link"));
      if (a) { a.focus({ preventScroll: true }); }
    } else if (focusCount) {
      const a = Array.from(document.querySelectorAll("#fleet-overview a")).find(function (l) { return l.getAttribute("href") === focusHref; });
      if (a) { a.focus({ preventScroll: true }); }
    }
    window.scrollTo(x, y);
  }

  setInterval(refresh, every);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
})();
