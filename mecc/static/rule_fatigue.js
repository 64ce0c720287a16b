/* Rule editor (/admin/rules): mark the rules staff mostly turn down. Reads
   GET /api/v1/reports/rule-fatigue (the last 30 days) once, and tags each flagged rule in the
   rule list whenever the list is drawn. Without the reports:read scope it shows nothing. */
(function () {
  "use strict";

  var M = window.Mecc;
  var main = M && M.$("main");
  var list = M && M.$("rule-list");
  if (!main || main.getAttribute("data-page") !== "rules" || !list) return;

  var flagged = {};

  function mark() {
    Array.prototype.forEach.call(list.tBodies[0].rows, function (row) {
      var rule = flagged[row.getAttribute("data-key")];
      var cell = row.cells[0];
      if (!rule || !cell || cell.querySelector(".fatigue")) return;
      var tag = M.el("span", {
        class: "tag fatigue", text: "Often turned down (" + M.formatRate(rule.override_rate) +
          ")",
        title: rule.declined + " declined, " + rule.not_now + " not now, " +
          rule.not_appropriate + " not appropriate of " + rule.with_outcome +
          " prompts with an outcome in the last 30 days"
      });
      tag.style.color = "#a4161a";
      tag.style.marginLeft = ".4rem";
      cell.appendChild(tag);
    });
  }

  M.api("GET", "/api/v1/reports/rule-fatigue").then(function (report) {
    report.items.forEach(function (r) { if (r.flagged) flagged[r.rule] = r; });
    mark();
    new MutationObserver(mark).observe(list.tBodies[0], { childList: true });
  }, function () { /* no reports:read scope, or no data: the list stays as it is */ });
})();
