// Invocation page: while the invocation is not final, fetch the page again
// every few seconds and swap its live parts, leaving the cancel form (and what
// is typed in it) alone; reload once it ends so the form goes. Without this
// script a <noscript> meta refresh reloads the whole page.
"use strict";
(function () {
  const root = document.getElementById("invocation");
  if (!root || root.getAttribute("data-final") === "true") { return; }
  const every = Number(root.getAttribute("data-refresh-ms")) || 3000;
  let busy = false;
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(window.location.pathname + window.location.search, { credentials: "same-origin", cache: "no-store" })
      .then(function (res) {
        if (res.redirected || !res.ok) { throw new Error("status " + res.status); }
        return res.text();
      })
      .then(function (html) {
        const doc = new DOMParser().parseFromString(html, "text/html");
        const fresh = doc.getElementById("invocation");
        if (!fresh) { return; }
        if (fresh.getAttribute("data-final") === "true" || !doc.getElementById("cancel-form") !== !document.getElementById("cancel-form")) {
          window.location.replace(window.location.pathname + window.location.search);
          return;
        }
        const x = window.scrollX, y = window.scrollY;
        ["inv-head", "inv-body"].forEach(function (id) {
          const now = document.getElementById(id), next = doc.getElementById(id);
          if (now && next) { now.replaceWith(document.importNode(next, true)); }
        });
        window.scrollTo(x, y);
      })
      .catch(function () { /* the next tick tries again */ })
      .finally(function () { busy = false; });
  }
  setInterval(refresh, every);
})();
