// Analytics charts: draws the page's JSON data block ("analytics-daily") with Chart.js.
// Without scripts the same numbers stay in the "Show as table" disclosures, which start
// open; once a chart is drawn its disclosure closes and the chart shows. No inline code
// (CSP): Chart.js sizes the canvas through CSSOM, which the policy allows.
(function () {
  "use strict";
  const block = document.getElementById("analytics-daily");
  if (!block || typeof window.Chart === "undefined") return;
  const Chart = window.Chart;
  const data = JSON.parse(block.textContent);
  const BLUE = "#1f5fbf";
  const ORANGE = "#c2571a";
  const INK = "#1c2430";
  const MUTED = "#5a6472";
  const GRID = "#e3e7ec";

  const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
  const labels = data.days.map(function (iso) { return dayFormat.format(new Date(iso + "T00:00:00Z")); });

  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = MUTED;
  Chart.defaults.animation = false;

  function bars(label1, values1, label2, values2) {
    return {
      type: "bar",
      data: {
        labels: labels,
        datasets: [
          { label: label1, data: values1, backgroundColor: BLUE },
          { label: label2, data: values2, backgroundColor: ORANGE },
        ],
      },
      options: baseOptions({ beginAtZero: true, ticks: { precision: 0 } }),
    };
  }

  function baseOptions(y) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { color: INK, boxWidth: 14 } } },
      scales: {
        x: { grid: { display: false }, ticks: { autoSkip: true, maxRotation: 0 } },
        y: Object.assign({ grid: { color: GRID } }, y),
      },
    };
  }

  const configs = {
    messages: function () { return bars("Sent", data.sent, "Received", data.received); },
    conversations: function () { return bars("New", data.new, "Responded", data.responded); },
    usage: function () {
      const options = baseOptions({
        beginAtZero: true,
        suggestedMax: 10, // low usage stays readable; busier data widens the scale
        ticks: { callback: function (v) { return v + " %"; } },
      });
      options.plugins.tooltip = {
        callbacks: { label: function (c) { return c.dataset.label + ": " + c.formattedValue + " %"; } },
      };
      return {
        type: "line",
        data: {
          labels: labels,
          datasets: [{
            label: "Volume limit usage",
            data: data.usage,
            borderColor: BLUE,
            backgroundColor: BLUE,
            pointRadius: data.days.length > 45 ? 0 : 2,
            spanGaps: false,
          }],
        },
        options: options,
      };
    },
  };

  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    const make = configs[canvas.getAttribute("data-chart")];
    if (!make) return;
    const figure = canvas.closest("figure");
    canvas.parentElement.hidden = false;
    new Chart(canvas, make());
    const table = figure && figure.querySelector("details.chart-table");
    if (table) table.open = false;
  });
})();
