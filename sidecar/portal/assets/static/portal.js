// predictd portal: the live charts of a model page. It polls /ui/api/live (the
// sidecar's in-process ring, one value per second) and redraws each canvas in place.
"use strict";
(function () {
  var live = document.getElementById("live");
  if (!live) {
    return;
  }
  var model = live.getAttribute("data-model");
  var colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

  // draw plots series (each {name, values}) on canvas id; values below 0 are gaps.
  function draw(id, series) {
    var c = document.getElementById(id);
    var g = c.getContext("2d");
    var w = c.width, h = c.height, left = 44, bottom = 18, top = 14;
    g.clearRect(0, 0, w, h);
    var maxY = 0, n = 0;
    series.forEach(function (s) {
      n = Math.max(n, s.values.length);
      s.values.forEach(function (v) { if (v > maxY) { maxY = v; } });
    });
    if (maxY <= 0) { maxY = 1; }
    maxY *= 1.1;
    g.strokeStyle = "#ccc"; g.fillStyle = "#444"; g.font = "10px sans-serif";
    g.beginPath(); g.moveTo(left, top); g.lineTo(left, h - bottom); g.lineTo(w, h - bottom); g.stroke();
    for (var t = 0; t <= 2; t++) {
      var yv = maxY * t / 2, y = h - bottom - (h - bottom - top) * t / 2;
      g.fillText(yv >= 100 ? yv.toFixed(0) : yv.toPrecision(2), 2, y + 3);
    }
    g.fillText("-" + n + " s", left, h - 4); g.fillText("now", w - 22, h - 4);
    series.forEach(function (s, k) {
      g.strokeStyle = colors[k % colors.length]; g.beginPath();
      var pen = false;
      s.values.forEach(function (v, i) {
        var x = left + (w - left) * i / Math.max(n - 1, 1);
        if (v < 0) { pen = false; return; }
        var y = h - bottom - (h - bottom - top) * v / maxY;
        if (pen) { g.lineTo(x, y); } else { g.moveTo(x, y); pen = true; }
        var next = s.values[i + 1];
        if ((i === 0 || s.values[i - 1] < 0) && (next === undefined || next < 0)) {
          g.fillStyle = colors[k % colors.length];
          g.fillRect(x - 1.5, y - 1.5, 3, 3); // a lone second: a dot, as no line reaches it
        }
      });
      g.stroke();
      g.fillStyle = colors[k % colors.length];
      g.fillText(s.name, left + 6 + k * 70, top - 3);
    });
  }

  // recent drops the leading seconds without requests, keeping at least the last 60,
  // so a model that just started taking traffic fills the charts.
  function recent(v) {
    var n = v.requests.length, first = n;
    for (var i = 0; i < n; i++) {
      if (v.requests[i] > 0) { first = i; break; }
    }
    var from = Math.max(0, Math.min(first, n - 60));
    var out = {end: v.end, errors: {}};
    ["requests", "p50_ms", "p99_ms", "candidates", "degraded"].forEach(function (k) { out[k] = v[k].slice(from); });
    Object.keys(v.errors).forEach(function (k) { out.errors[k] = v.errors[k].slice(from); });
    return out;
  }

  function update(all) {
    var v = recent(all);
    var errs = [], total = 0;
    Object.keys(v.errors).sort().forEach(function (code) {
      errs.push({name: code, values: v.errors[code]});
    });
    var errSum = v.requests.map(function (_, i) {
      var s = 0; errs.forEach(function (e) { s += e.values[i]; }); return s;
    });
    all.requests.forEach(function (r) { total += r; });
    draw("chart-rps", [{name: "requests", values: v.requests}, {name: "errors", values: errSum}, {name: "degraded", values: v.degraded}]);
    draw("chart-latency", [{name: "p50", values: v.p50_ms}, {name: "p99", values: v.p99_ms}]);
    draw("chart-candidates", [{name: "candidates", values: v.candidates}]);
    draw("chart-errors", errs.length ? errs : [{name: "none", values: errSum}]);
    var legend = document.getElementById("error-codes");
    legend.textContent = "";
    errs.forEach(function (e, k) {
      var s = document.createElement("span");
      s.style.color = colors[k % colors.length];
      s.textContent = e.name;
      legend.appendChild(s);
    });
    var last = v.requests[v.requests.length - 1];
    document.getElementById("live-status").textContent =
      total + " requests in the last " + all.requests.length + " s; " + last + " in the last second (updated " +
      new Date(v.end * 1000).toLocaleTimeString() + ").";
  }

  function poll() {
    fetch("/ui/api/live?model=" + encodeURIComponent(model))
      .then(function (r) { return r.json(); })
      .then(update)
      .catch(function (e) { document.getElementById("live-status").textContent = "live data unavailable: " + e; });
  }
  poll();
  setInterval(poll, 2000);
})();
