// Time charts: a hover crosshair reading out the exact figures the server wrote
// into data attributes, time-range brushing that sets since/until in the URL,
// and a legend that shows or hides a release's series. Charts read without it.
"use strict";
(function () {
  const charts = Array.from(document.querySelectorAll("svg.chart[data-since]"));
  if (charts.length === 0) return;

  function geometry(svg) {
    const d = svg.dataset;
    return { since: +d.since, until: +d.until, x0: +d.x0, x1: +d.x1 };
  }
  // viewBox x of a pointer event.
  function viewX(svg, ev) {
    const pt = svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse()).x;
  }
  function timeAt(g, x) {
    const f = Math.min(1, Math.max(0, (x - g.x0) / (g.x1 - g.x0)));
    return g.since + f * (g.until - g.since);
  }
  function xAt(g, t) { return g.x0 + (t - g.since) / (g.until - g.since) * (g.x1 - g.x0); }
  function iso(ms) { return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z"); }

  // The figure each series has nearest t (within a step), from data-points.
  function nearest(series, t) {
    const raw = series.dataset.points;
    if (!raw) return null;
    let best = null, bestD = Infinity;
    for (const pair of raw.split(" ")) {
      const i = pair.indexOf(":");
      const pt = +pair.slice(0, i), d = Math.abs(pt - t);
      if (d < bestD) { bestD = d; best = { t: pt, v: pair.slice(i + 1) }; }
    }
    return best;
  }
  function fmt(svg, v) {
    const n = +v, id = svg.dataset.chart;
    if (id === "error-rate") return (n * 100).toFixed(n < 0.1 ? 2 : 1) + "%";
    if (id === "throughput") return n.toFixed(2) + "/s";
    if (id === "latency") return n.toFixed(1) + " ms";
    return String(+n.toPrecision(6));
  }

  const readouts = new Map();
  function readout(svg) {
    let r = readouts.get(svg);
    if (!r) {
      r = document.createElement("div");
      r.className = "readout"; r.hidden = true; r.setAttribute("aria-hidden", "true");
      svg.parentNode.appendChild(r);
      readouts.set(svg, r);
    }
    return r;
  }

  function show(t) {
    for (const svg of charts) {
      const g = geometry(svg), line = svg.querySelector(".crosshair"), r = readout(svg);
      if (t === null || t < g.since || t > g.until) {
        line.setAttribute("visibility", "hidden"); r.hidden = true; continue;
      }
      const x = xAt(g, t);
      line.setAttribute("x1", x); line.setAttribute("x2", x); line.setAttribute("visibility", "visible");
      r.textContent = "";
      const head = document.createElement("div"); head.className = "rt"; head.textContent = iso(t);
      r.appendChild(head);
      for (const s of svg.querySelectorAll(".series:not(.off)")) {
        const p = nearest(s, t);
        if (!p) continue;
        const row = document.createElement("div");
        row.textContent = s.dataset.label + ": " + fmt(svg, p.v);
        r.appendChild(row);
      }
      r.hidden = false;
    }
  }

  // Brushing: drag across any chart to zoom every chart on the page.
  let brush = null;
  for (const svg of charts) {
    svg.addEventListener("pointermove", function (ev) {
      const g = geometry(svg), x = viewX(svg, ev);
      show(timeAt(g, x));
      if (brush && brush.svg === svg) {
        const rect = svg.querySelector(".brush"), a = Math.min(brush.x, x), b = Math.max(brush.x, x);
        rect.setAttribute("x", Math.max(g.x0, a)); rect.setAttribute("width", Math.min(g.x1, b) - Math.max(g.x0, a));
        rect.setAttribute("visibility", "visible");
      }
    });
    svg.addEventListener("pointerleave", function () { show(null); });
    svg.addEventListener("pointerdown", function (ev) {
      brush = { svg: svg, x: viewX(svg, ev) };
      svg.setPointerCapture(ev.pointerId);
    });
    svg.addEventListener("pointerup", function (ev) {
      if (!brush || brush.svg !== svg) return;
      const g = geometry(svg), x = viewX(svg, ev), from = brush.x;
      brush = null;
      svg.querySelector(".brush").setAttribute("visibility", "hidden");
      if (Math.abs(x - from) < 4) return; // a click, not a drag
      const a = timeAt(g, Math.min(from, x)), b = timeAt(g, Math.max(from, x));
      const u = new URL(window.location.href);
      u.searchParams.set("since", iso(Math.floor(a / 60000) * 60000));
      u.searchParams.set("until", iso(Math.ceil(b / 60000) * 60000));
      window.location.assign(u.toString());
    });
  }

  // Legend: a release's button shows or hides its series on every chart.
  for (const btn of document.querySelectorAll("[data-legend]")) {
    btn.addEventListener("click", function () {
      const on = btn.getAttribute("aria-pressed") !== "true";
      btn.setAttribute("aria-pressed", on ? "true" : "false");
      for (const s of document.querySelectorAll("svg.chart .series")) {
        if (s.dataset.release === btn.dataset.legend || s.dataset.series === btn.dataset.legend) s.classList.toggle("off", !on);
      }
    });
  }
})();
