// The dashboard's charts, drawn with the bundled Chart.js from the figures the page carries.
(function () {
  "use strict";
  var source = document.getElementById("dashboard-data");
  if (!source || typeof Chart === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var blue = "#0b5cad", orange = "#d98300", red = "#b3261e", green = "#1d7a46";
  var palette = { self_service: green, transferred: blue, abandoned: orange, failed_auth: red,
                  locked: "#7a1b15", not_connected: "#8a96a3", in_progress: "#c7cfd9", none: "#e3e8ee" };
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  var charts = {};
  function draw(id, config) {
    var canvas = document.getElementById(id);
    if (canvas) { charts[id] = new Chart(canvas, config); canvas.dataset.rendered = "yes"; }
  }
  var integer = { beginAtZero: true, ticks: { precision: 0 } };
  draw("chart-hourly", {
    type: "bar",
    data: { labels: data.hourly.labels, datasets: [{ label: "calls", data: data.hourly.values, backgroundColor: blue }] },
    options: { plugins: { legend: { display: false } }, scales: { y: integer, x: { ticks: { autoSkip: true, maxTicksLimit: 24 } } } }
  });
  var called = data.outcomes.values.some(function (v) { return v > 0; });
  // a period without calls: a grey ring that says so, not an empty space
  var outcomes = called ? data.outcomes : { labels: ["no calls"], values: [1], keys: ["none"] };
  draw("chart-outcomes", {
    type: "doughnut",
    data: { labels: outcomes.labels, datasets: [{ data: outcomes.values,
      backgroundColor: outcomes.keys.map(function (k) { return palette[k] || "#5f6b7a"; }) }] },
    options: { plugins: { legend: { position: "right" }, tooltip: { enabled: called } } }
  });
  draw("chart-funnel", {
    type: "bar",
    data: { labels: data.funnel.labels, datasets: [
      { label: "reached", data: data.funnel.reached, backgroundColor: "#9cc1e8" },
      { label: "abandoned there", data: data.funnel.abandoned, backgroundColor: orange }
    ] },
    options: { indexAxis: "y", scales: { x: integer } }
  });
  draw("chart-auth", {
    type: "bar",
    data: { labels: data.auth.labels, datasets: [{ data: data.auth.values, backgroundColor: [orange, "#e6b35c", red] }] },
    options: { plugins: { legend: { display: false } }, scales: { y: integer } }
  });
  draw("chart-ratings", {
    type: "bar",
    data: { labels: data.ratings.labels.length ? data.ratings.labels : ["no ratings"],
            datasets: [{ data: data.ratings.labels.length ? data.ratings.values : [0], backgroundColor: green }] },
    options: { plugins: { legend: { display: false } }, scales: { y: integer } }
  });
  window.hotlineCharts = charts;
})();
