// Deployment page: the pin form says exactly what will happen for the release
// chosen. Without this script it says so for the preselected one.
"use strict";
(function () {
  const sel = document.getElementById("pin-release");
  const out = document.getElementById("pin-effect-release");
  if (!sel || !out) return;
  sel.addEventListener("change", function () { out.textContent = sel.value; });
})();
