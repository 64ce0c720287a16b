/* The outcome dashboard (/reports): GET /api/v1/reports/outcomes with the tab's key, drawn as an
   inline SVG stacked bar chart (window.Mecc, from admin.js) with the numbers in a table. */
(function () {
  "use strict";

  var M = window.Mecc;
  var main = M.$("main");
  if (!main || main.getAttribute("data-page") !== "reports") return;

  // Latest outcome of each pushed prompt; colours keep 3:1 contrast against white.
  var SERIES = [
    { key: "conversation_had", label: "Conversation had", color: "#005eb8" },
    { key: "referred", label: "Referred", color: "#007f3b" },
    { key: "declined", label: "Declined", color: "#a4161a" },
    { key: "not_now", label: "Not now", color: "#8a5300" },
    { key: "not_appropriate", label: "Not appropriate", color: "#5a2d82" },
    { key: "no_outcome", label: "No outcome yet", color: "#768692" }
  ];

  function isoDay(date) { return date.toISOString().slice(0, 10); }

  function addDays(day, n) {
    var d = new Date(day + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + n);
    return isoDay(d);
  }

  function defaults() {
    var today = isoDay(new Date());
    if (!M.$("r-to").value) M.$("r-to").value = today;
    if (!M.$("r-from").value) M.$("r-from").value = addDays(today, -29);
  }

  function query() {
    // The page asks for whole days, `to` inclusive; the API's window is [from, to).
    var params = new URLSearchParams();
    params.set("from", M.$("r-from").value);
    params.set("to", addDays(M.$("r-to").value, 1));
    params.set("group_by", M.$("r-group").value);
    var org = M.$("r-org").value.trim();
    if (org) params.set("organisation", org.toUpperCase());
    return "/api/v1/reports/outcomes?" + params.toString();
  }

  function load() {
    defaults();
    var status = M.$("report-status");
    M.setStatus(status, "Loading…");
    return M.api("GET", query()).then(function (report) {
      render(report);
      M.setStatus(status, "");
    }, function (err) {
      M.setStatus(status, M.friendlyError(err, "the reports:read scope"), "error");
      var errors = (err.problem && err.problem.errors) || {};
      var names = Object.keys(errors);
      if (names.length) {
        M.setStatus(status, names.map(function (n) {
          return n + ": " + errors[n].join(" ");
        }).join(" "), "error");
      }
      throw err;
    });
  }

  function label(report, key) {
    return report.group_by === "rule" || report.group_by === "organisation" ? key : M.words(key);
  }

  function render(report) {
    M.$("report").hidden = false;
    var last = new Date(new Date(report.to).getTime() - 1);
    M.$("report-window").textContent = "Contacts from " + M.formatTime(report.from) +
      " up to " + M.formatTime(last.toISOString()) + " (UTC window [from, to))" +
      (report.organisation ? ", organisation " + report.organisation : ", every organisation " +
       "this key may see") + ". A prompt counts under its latest outcome.";
    renderTotals(report.totals);
    var rows = report.items.map(function (item) {
      var values = {};
      SERIES.forEach(function (s) {
        values[s.key] = s.key === "no_outcome" ? item.no_outcome : item.outcomes[s.key];
      });
      return { label: label(report, item.key), short: item.key.slice(5), values: values };
    });
    var chart = M.clear(M.$("chart"));
    var vertical = report.group_by === "day";
    M.$("chart-caption").textContent = "Pushed prompts by their latest outcome, per " +
      (vertical ? "day (UTC)" : report.group_by);
    if (!rows.length) {
      chart.appendChild(M.el("p", { class: "hint", text: "No prompts in this window." }));
    } else {
      chart.appendChild(M.barChart({
        rows: rows, series: SERIES, vertical: vertical,
        title: "Pushed prompts by latest outcome, per " + report.group_by,
        description: "Stacked bars: conversation had, referred, declined, not now, not " +
                     "appropriate and no outcome yet. The table below has every number."
      }));
    }
    M.legend(M.$("legend"), SERIES);
    renderTable(report);
  }

  function renderTotals(t) {
    var cards = [
      ["Prompts created", M.formatNumber(t.created), null],
      ["Pushed to staff", M.formatNumber(t.pushed), M.formatNumber(t.deferred) + " deferred"],
      ["Conversations", M.formatNumber(t.outcomes.conversation_had),
       M.formatRate(t.rates.conversation)],
      ["Referrals", M.formatNumber(t.outcomes.referred), M.formatRate(t.rates.referral)],
      ["Declines", M.formatNumber(t.outcomes.declined), M.formatRate(t.rates.decline)],
      ["With an outcome", M.formatNumber(t.with_outcome), M.formatRate(t.rates.outcome)]
    ];
    var list = M.clear(M.$("totals"));
    cards.forEach(function (c) {
      list.appendChild(M.el("div", null, M.el("dt", { text: c[0] }),
        M.el("dd", null, c[1], c[2] ? M.el("small", { text: " " + c[2] }) : null)));
    });
  }

  var COLUMNS = [
    { label: "Created", value: function (r) { return M.formatNumber(r.created); } },
    { label: "Pushed", value: function (r) { return M.formatNumber(r.pushed); } },
    { label: "Deferred", value: function (r) { return M.formatNumber(r.deferred); } },
    { label: "Conversation", value: function (r) { return M.formatNumber(r.outcomes.conversation_had); } },
    { label: "Referred", value: function (r) { return M.formatNumber(r.outcomes.referred); } },
    { label: "Declined", value: function (r) { return M.formatNumber(r.outcomes.declined); } },
    { label: "Not now", value: function (r) { return M.formatNumber(r.outcomes.not_now); } },
    { label: "Not appropriate", value: function (r) { return M.formatNumber(r.outcomes.not_appropriate); } },
    { label: "No outcome", value: function (r) { return M.formatNumber(r.no_outcome); } },
    { label: "Outcome rate", value: function (r) { return M.formatRate(r.rates.outcome); } },
    { label: "Conversation rate", value: function (r) { return M.formatRate(r.rates.conversation); } },
    { label: "Referral rate", value: function (r) { return M.formatRate(r.rates.referral); } },
    { label: "Decline rate", value: function (r) { return M.formatRate(r.rates.decline); } }
  ];

  function row(cells, first, header) {
    return M.el("tr", null, M.el("th", { scope: header ? "col" : "row", text: first }),
      cells.map(function (text) {
        return M.el(header ? "th" : "td", { scope: header ? "col" : null, class: "num",
                                           text: text });
      }));
  }

  function renderTable(report) {
    var tableNode = M.$("report-table");
    var head = M.clear(tableNode.tHead), body = M.clear(tableNode.tBodies[0]);
    var foot = M.clear(tableNode.tFoot);
    var title = report.group_by.charAt(0).toUpperCase() + report.group_by.slice(1);
    head.appendChild(row(COLUMNS.map(function (c) { return c.label; }), title, true));
    report.items.forEach(function (item) {
      body.appendChild(row(COLUMNS.map(function (c) { return c.value(item); }),
                           label(report, item.key), false));
    });
    foot.appendChild(row(COLUMNS.map(function (c) { return c.value(report.totals); }),
                         "All", false));
  }

  M.$("report-form").addEventListener("submit", function (event) {
    event.preventDefault();
    load().catch(function () { /* shown in the status line */ });
  });
  defaults();
  M.initKeyPanel(load, "the reports:read scope");
})();
