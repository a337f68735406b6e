// Periscope dashboard: the few behaviours the server cannot draw. Pages work
// without it; it adds keyboard shortcuts and reads out relative times.
"use strict";
(function () {
  // "/" focuses the page's search box; Escape clears and leaves it.
  document.addEventListener("keydown", function (e) {
    const t = e.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
    if (e.key === "/" && !typing) {
      const box = document.querySelector("[data-search]");
      if (box) { e.preventDefault(); box.focus(); box.select(); }
    } else if (e.key === "Escape" && t instanceof HTMLInputElement && t.hasAttribute("data-search")) {
      t.value = ""; t.blur();
    }
  });
})();
