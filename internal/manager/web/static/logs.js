// Logs page: the live tail and a tidy filter URL. The tail opens an
// EventSource on /logs/tail with the page's filters; each event is a table row
// the server rendered (and escaped) with the page's own template, so no record
// text is ever turned into markup here.
"use strict";
(function () {
  const form = document.getElementById("log-filters");
  if (form) {
    // Leave empty fields out of the URL, so a shared link says only what is set.
    form.addEventListener("submit", function () {
      for (const el of form.elements) {
        if ((el instanceof HTMLInputElement || el instanceof HTMLSelectElement) && el.name && el.value === "") {
          el.disabled = true;
        }
      }
    });
    // Coming back to the page (back button) must find the fields usable.
    window.addEventListener("pageshow", function () {
      for (const el of form.elements) { el.disabled = false; }
    });
  }

  const button = document.getElementById("tail");
  const table = document.getElementById("logs");
  if (!button || !table) { return; }
  const body = table.tBodies[0];
  const status = document.getElementById("tail-status");
  const empty = document.getElementById("logs-empty");
  const keep = 1000; // rows kept while tailing; older ones drop off the bottom
  let source = null;
  let count = 0;

  function say(text) { if (status) { status.textContent = text; } }

  function stop(text) {
    if (source) { source.close(); source = null; }
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Live tail";
    say(text);
  }

  function start() {
    count = 0;
    source = new EventSource(button.dataset.tail);
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Stop tail";
    say("Connecting…");
    source.addEventListener("open", function () { say("Following new records as they arrive."); });
    source.addEventListener("log", function (e) {
      body.insertAdjacentHTML("afterbegin", e.data);
      const row = body.firstElementChild;
      if (row) { row.classList.add("fresh"); }
      while (body.rows.length > keep) { body.deleteRow(-1); }
      if (empty) { empty.hidden = true; }
      count++;
      say(count + (count === 1 ? " new record" : " new records") + " while following.");
    });
    source.addEventListener("end", function (e) { stop(e.data); });
    source.addEventListener("error", function () {
      if (source && source.readyState === EventSource.CLOSED) {
        stop("The live tail was refused or lost; reload the page to try again.");
      } else {
        say("Connection lost; reconnecting…");
      }
    });
  }

  button.addEventListener("click", function () {
    if (source) { stop("Stopped."); } else { start(); }
  });
  window.addEventListener("pagehide", function () { if (source) { source.close(); } });
})();
