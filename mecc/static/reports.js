/* The reports dashboard (/reports), as the signed-in person: outcomes, who prompts reach
   (equity), rules staff mostly turn down (alert fatigue), prompts per member of staff per day,
   and what referrals led to. Each chart has its numbers in a table under it, and a CSV
   download of the same report (the API answers CSV for Accept: text/csv).

   A count hidden by small-number suppression arrives as null and shows as "<5"; a rate that
   rests on it shows as "–". Text from the API only ever goes in with textContent. */
(function () {
  "use strict";

  var M = window.Mecc;
  var main = M.$("main");
  if (!main || main.getAttribute("data-page") !== "reports") return;

  var OUTCOMES = [
    { key: "conversation_had", label: "Conversation had", color: "#005eb8" },
    { key: "referred", label: "Referred", color: "#007f3b" },
    { key: "declined", label: "Declined", color: "#a4161a" },
    { key: "not_now", label: "Not now", color: "#8a5300" },
    { key: "not_appropriate", label: "Not appropriate", color: "#5a2d82" },
    { key: "no_outcome", label: "No outcome yet", color: "#768692" }
  ];
  var GROUP_WORDS = { rule: "Rule", organisation: "Organisation", staff: "Member of staff",
    team: "Team", topic: "Topic", setting: "Setting", day: "Day (UTC)",
    ethnicity_group: "Ethnic group", age_band: "Age band", sex: "Sex",
    deprivation_decile: "Deprivation decile", postcode_district: "Postcode district",
    service: "Service" };
  var reports = {};  // the last answer of each section, for its CSV file name

  // ---------------------------------------------------------------- window and formatting

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
  function windowQuery() {
    // The page asks for whole days, `to` inclusive; the API's window ends before `to`.
    var params = new URLSearchParams();
    params.set("from", M.$("r-from").value);
    params.set("to", addDays(M.$("r-to").value, 1));
    var org = M.$("r-org").value.trim();
    if (org) params.set("organisation", org.toUpperCase());
    return params;
  }
  function dayWords(date, withYear) {
    var options = { day: "numeric", month: "short", timeZone: "UTC" };
    if (withYear) options.year = "numeric";
    return date.toLocaleDateString("en-GB", options);
  }
  // "Contacts from 5 Nov to 4 Dec 2026": the window in words, its last day inclusive.
  function windowWords(what, report) {
    var first = new Date(report.from), last = new Date(new Date(report.to).getTime() - 1);
    if (isoDay(first) === isoDay(last)) return what + " on " + dayWords(last, true);
    var sameYear = first.getUTCFullYear() === last.getUTCFullYear();
    return what + " from " + dayWords(first, !sameYear) + " to " + dayWords(last, true);
  }
  function groupLabel(groupBy, key) {
    if (key === null || key === undefined) return "Not recorded";
    if (groupBy === "age_band") return key === "unknown" ? "Not known" : key.replace("-", "–");
    if (groupBy === "deprivation_decile") {
      return key === "unknown" ? "Not known" : "Decile " + key +
        (key === "1" ? " (most deprived)" : key === "10" ? " (least deprived)" : "");
    }
    if (key === "unknown") return "Not known";
    if (["rule", "organisation", "staff", "postcode_district", "day"].indexOf(groupBy) >= 0) {
      return key;
    }
    return M.words(key).replace(/^./, function (c) { return c.toUpperCase(); });
  }
  function hiddenNote(report) {
    var s = report.suppression || {};
    if (!s.applied) return "";
    return "“hidden” marks a number from 1 to " + (s.min_cell - 1) + ", or one that would " +
      "let such a number be worked out from the others (the CSV says “<" + s.min_cell +
      "”); a rate resting on it shows “–”." +
      (s.suppressed_groups ? " " + s.suppressed_groups + " group(s) have hidden numbers." : "");
  }

  // A table cell: a count with its rate underneath (keeps every rate in view at 1024 px). A
  // count hidden by small-number suppression says so rather than show a number.
  function countAndRate(value, rate, minCell) {
    var hidden = value === null || value === undefined;
    var cell = M.el("td", { class: hidden ? "num hidden" : "num" },
                    hidden ? "hidden" : M.formatNumber(value));
    if (rate !== undefined) {
      cell.appendChild(M.el("br"));
      cell.appendChild(M.el("small", { class: "rate", text: M.formatRate(rate) }));
    }
    if (hidden) {
      cell.setAttribute("title", "Hidden: below " + (minCell || 5) + ", or it would let a " +
                        "small number be worked out");
    }
    return cell;
  }
  // A table with a caption, a header row, a row per group and (optional) a totals row.
  function table(node, caption, headers, rows, total) {
    M.clear(node);
    node.appendChild(M.el("caption", { text: caption }));
    node.appendChild(M.el("thead", null, M.el("tr", null, headers.map(function (h, i) {
      return M.el("th", { scope: "col", class: i ? "num" : null, text: h });
    }))));
    node.appendChild(M.el("tbody", null, rows));
    if (total) node.appendChild(M.el("tfoot", null, total));
  }
  function rowOf(label, cells, isTotal) {
    return M.el("tr", { class: isTotal ? "total" : null },
                M.el("th", { scope: "row", text: label }), cells);
  }
  function cards(node, items) {
    var list = M.clear(node);
    items.forEach(function (c) {
      list.appendChild(M.el("div", null, M.el("dt", { text: c[0] }),
        M.el("dd", null, c[1], c[2] ? M.el("small", { text: " " + c[2] }) : null)));
    });
  }
  function legend(id, series) { M.legend(M.$(id), series); }

  // ---------------------------------------------------------------- outcomes and equity

  function outcomeCells(r, minCell) {
    var o = r.outcomes;
    return [
      countAndRate(r.created, undefined, minCell), countAndRate(r.pushed, undefined, minCell),
      countAndRate(o.conversation_had, r.rates.conversation, minCell),
      countAndRate(o.referred, r.rates.referral, minCell),
      countAndRate(o.declined, r.rates.decline, minCell),
      countAndRate(o.not_now, undefined, minCell),
      countAndRate(o.not_appropriate, undefined, minCell),
      countAndRate(r.no_outcome, undefined, minCell),
      countAndRate(r.with_outcome, r.rates.outcome, minCell)
    ];
  }
  var OUTCOME_HEADERS = ["Created", "Pushed", "Conversation", "Referred", "Declined",
                         "Not now", "Not appropriate", "No outcome", "Any outcome"];

  function outcomeTable(node, report, caption) {
    var minCell = (report.suppression || {}).min_cell;
    var rows = report.items.map(function (r) {
      return rowOf(groupLabel(report.group_by, r.key), outcomeCells(r, minCell));
    });
    table(node, caption, [GROUP_WORDS[report.group_by] || report.group_by]
      .concat(OUTCOME_HEADERS), rows, rowOf("All", outcomeCells(report.totals, minCell), true));
  }

  function outcomeValues(r) {
    var values = {};
    OUTCOMES.forEach(function (s) {
      values[s.key] = s.key === "no_outcome" ? r.no_outcome : r.outcomes[s.key];
    });
    return values;
  }

  function renderOutcomes(report) {
    var t = report.totals;
    cards(M.$("totals"), [
      ["Prompts created", M.formatNumber(t.created), null],
      ["Pushed to staff", M.formatNumber(t.pushed), M.formatNumber(t.deferred) + " deferred"],
      ["Conversations", M.formatNumber(t.outcomes.conversation_had),
       M.formatRate(t.rates.conversation)],
      ["Referrals", M.formatNumber(t.outcomes.referred), M.formatRate(t.rates.referral)],
      ["Declines", M.formatNumber(t.outcomes.declined), M.formatRate(t.rates.decline)],
      ["With an outcome", M.formatNumber(t.with_outcome), M.formatRate(t.rates.outcome)]
    ]);
    var vertical = report.group_by === "day";
    var chart = M.clear(M.$("chart"));
    M.$("chart-caption").textContent = "Pushed prompts by their latest outcome, per " +
      (GROUP_WORDS[report.group_by] || report.group_by).toLowerCase();
    if (!report.items.length) {
      chart.appendChild(M.el("p", { class: "hint", text: "No prompts in this window." }));
    } else {
      chart.appendChild(M.barChart({
        rows: report.items.map(function (r) {
          return { label: groupLabel(report.group_by, r.key), short: (r.key || "").slice(5),
                   values: outcomeValues(r) };
        }),
        series: OUTCOMES, vertical: vertical, title: M.$("chart-caption").textContent,
        description: "Stacked bars of the latest outcome; the table below has every number."
      }));
    }
    legend("legend", OUTCOMES);
    outcomeTable(M.$("report-table"), report, "The numbers behind the chart; the rate under a " +
      "count is its share of pushed prompts.");
  }

  // One 100% bar per group: shares of its pushed prompts by latest outcome, so groups of any
  // size compare. Outcomes hidden as small numbers share one grey segment; a group whose
  // pushed count is hidden gets no bar (the table says why).
  var HIDDEN = { key: "hidden", label: "Hidden (small numbers)", color: "#d0d5d9" };

  function shareChart(report) {
    var width = 720, labelWidth = 190, right = 90, rowHeight = 26, top = 8;
    var barWidth = width - labelWidth - right, items = report.items;
    var height = top + items.length * rowHeight + 24;
    var root = M.svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
                              "aria-label": "Share of pushed prompts by latest outcome, per " +
                              GROUP_WORDS[report.group_by].toLowerCase() });
    [0, 0.5, 1].forEach(function (f) {
      var x = labelWidth + f * barWidth;
      root.appendChild(M.svg("line", { class: "grid-line", x1: x, x2: x, y1: top,
                                       y2: top + items.length * rowHeight }));
      root.appendChild(M.svg("text", { x: x, y: height - 6, "text-anchor": "middle",
                                       text: (f * 100) + "%" }));
    });
    items.forEach(function (r, i) {
      var y = top + i * rowHeight, label = groupLabel(report.group_by, r.key);
      root.appendChild(M.svg("text", { x: labelWidth - 8, y: y + rowHeight / 2 + 4,
                                       "text-anchor": "end", text: label.slice(0, 26) }));
      if (!r.pushed) {
        root.appendChild(M.svg("text", { x: labelWidth + 6, y: y + rowHeight / 2 + 4,
          class: "hidden-note",
          text: r.pushed === 0 ? "nothing pushed" : "numbers hidden (small group)" }));
        return;
      }
      var values = outcomeValues(r), x = labelWidth, shown = 0;
      OUTCOMES.concat([HIDDEN]).forEach(function (s) {
        var value = s === HIDDEN ? r.pushed - shown : values[s.key];
        if (value === null || !value) return;
        if (s !== HIDDEN) shown += value;
        var w = value / r.pushed * barWidth;
        root.appendChild(M.svg("rect", { x: x, y: y + 4, width: w, height: rowHeight - 8,
                                         fill: s.color },
          M.svg("title", { text: label + " — " + s.label + ": " +
                           M.formatRate(value / r.pushed) })));
        x += w;
      });
      root.appendChild(M.svg("text", { x: labelWidth + barWidth + 6, y: y + rowHeight / 2 + 4,
                                       text: M.formatNumber(r.pushed) + " pushed" }));
    });
    return root;
  }

  function renderEquity(report) {
    M.$("e-suppression").textContent = hiddenNote(report);
    M.$("e-caption").textContent = "Share of pushed prompts by latest outcome, per " +
      GROUP_WORDS[report.group_by].toLowerCase();
    var chart = M.clear(M.$("e-chart"));
    if (!report.items.length) {
      chart.appendChild(M.el("p", { class: "hint", text: "No prompts in this window." }));
    } else {
      chart.appendChild(shareChart(report));
    }
    legend("e-legend", OUTCOMES.concat([HIDDEN]));
    outcomeTable(M.$("e-table"), report, "Counts per group; the rate under a count is its " +
      "share of that group's pushed prompts.");
  }

  // ---------------------------------------------------------------- the other sections

  function renderFatigue(report) {
    var t = report.thresholds;
    M.$("f-note").textContent = "Flagged: at least " + M.formatRate(t.override_rate) +
      " of the prompts with an outcome were declined, not now or not appropriate, over at " +
      "least " + t.min_prompts + " pushed prompts. " + report.flagged + " rule(s) flagged.";
    var rows = report.items.map(function (r) {
      var name = M.el("th", { scope: "row" }, M.el("span", { text: r.title }), M.el("br"),
                      M.el("code", { text: r.rule }));
      return M.el("tr", { class: r.flagged ? "flagged" : null }, name,
        [r.pushed, r.with_outcome, r.declined, r.not_appropriate, r.not_now, r.no_outcome]
          .map(function (v) { return M.el("td", { class: "num", text: M.formatNumber(v) }); }),
        M.el("td", { class: "num", text: M.formatRate(r.override_rate) }),
        M.el("td", null, r.flagged ? M.el("span", { class: "tag flag", text: "Flagged" })
                                   : "–"));
    });
    table(M.$("f-table"), "Per rule; the override rate is declined, not now and not " +
      "appropriate as a share of prompts with an outcome.", ["Rule", "Pushed",
      "With an outcome", "Declined", "Not appropriate", "Not now", "No outcome",
      "Override rate", "Flag"], rows);
  }

  var LOAD_SERIES = [
    { key: "median", label: "Up to the median", color: "#005eb8" },
    { key: "p90", label: "Median to 90th percentile", color: "#41b6e6" },
    { key: "max", label: "90th percentile to the busiest day", color: "#768692" }
  ];

  function renderLoad(report) {
    var d = report.per_staff_day;
    cards(M.$("l-totals"), [
      ["Median a day", M.formatNumber(d.median), null],
      ["90th percentile", M.formatNumber(d.p90), null],
      ["Busiest day", M.formatNumber(d.max), null],
      ["Staff", M.formatNumber(report.staff), M.formatNumber(report.staff_days) + " staff-days"],
      ["Without a staff id", M.formatNumber(report.without_staff), "prompts"]
    ]);
    var teams = report.teams;
    var chart = M.clear(M.$("l-chart"));
    if (!teams.length) {
      chart.appendChild(M.el("p", { class: "hint", text: "No prompts in this window." }));
    } else {
      chart.appendChild(M.barChart({
        rows: teams.map(function (t) {
          return { label: groupLabel("team", t.team),
                   values: { median: t.median, p90: t.p90 - t.median, max: t.max - t.p90 } };
        }),
        series: LOAD_SERIES, title: "Prompts a day per member of staff, by team",
        description: "Each bar runs to the busiest day; its parts end at the median and the " +
                     "90th percentile. The table below has every number."
      }));
    }
    legend("l-legend", LOAD_SERIES);
    var rows = teams.map(function (t) {
      return rowOf(groupLabel("team", t.team), [t.staff, t.staff_days, t.pushed, t.median,
        t.p90, t.max].map(function (v) {
        return M.el("td", { class: "num", text: M.formatNumber(v) });
      }));
    });
    var all = rowOf("All staff", [report.staff, report.staff_days,
      report.pushed - report.without_staff, d.median, d.p90, d.max].map(function (v) {
      return M.el("td", { class: "num", text: M.formatNumber(v) });
    }), true);
    table(M.$("l-table"), "Prompts pushed per member of staff per day, by team",
          ["Team", "Staff", "Staff-days", "Prompts", "Median", "90th percentile", "Max"], rows,
          all);
  }

  var FUNNEL = [{ key: "n", label: "Referrals", color: "#007f3b" }];
  var STATEMENTS = {
    better_able_to_manage: "I feel better able to manage my long-term condition(s)",
    support_around_me: "I have the support I need around me",
    hope_for_future: "I feel hopeful about the future",
    know_what_helps: "I know what helps me to stay well",
    involved_in_decisions: "I am involved in decisions about my care and support",
    able_to_articulate_needs: "I can say what matters to me and what I need"
  };

  function referralCells(r, minCell) {
    var s = r.status;
    return [
      countAndRate(r.referrals, undefined, minCell), countAndRate(s.requested, undefined, minCell),
      countAndRate(r.accepted, r.rates.acceptance, minCell),
      countAndRate(s.declined, undefined, minCell),
      countAndRate(r.attended, r.rates.attendance, minCell),
      countAndRate(r.did_not_attend, undefined, minCell),
      countAndRate(s.closed, undefined, minCell)
    ];
  }

  function renderReferrals(report) {
    var minCell = (report.suppression || {}).min_cell, t = report.totals;
    M.$("x-window").textContent = windowWords("Referrals opened", report) + ". " +
      hiddenNote(report);
    var chart = M.clear(M.$("x-chart"));
    if (!t.referrals) {
      chart.appendChild(M.el("p", { class: "hint", text: "No referrals in this window." }));
    } else {
      chart.appendChild(M.barChart({
        rows: [["Referred", t.referrals], ["Taken on by the service", t.accepted],
               ["Attended", t.attended]].map(function (p) {
          return { label: p[0], values: { n: p[1] || 0 } };
        }),
        series: FUNNEL, title: "From referral to attendance",
        description: "Referrals opened, taken on by the service, and attended."
      }));
    }
    legend("x-legend", FUNNEL);
    var rows = report.items.map(function (r) {
      return rowOf(r.label ? r.label : groupLabel(report.group_by, r.key),
                   referralCells(r, minCell));
    });
    table(M.$("x-table"), "Referrals by their status now; under Accepted the share of " +
      "referrals, under Attended the share of those whose attendance is known.",
      [GROUP_WORDS[report.group_by], "Referrals", "Waiting", "Accepted", "Declined",
       "Attended", "Did not attend", "Closed"], rows, rowOf("All", referralCells(t, minCell),
                                                          true));
    var scores = Object.keys(STATEMENTS).map(function (item) {
      var o = t.personal_outcomes[item];
      return rowOf(STATEMENTS[item], [countAndRate(o.responses, undefined, minCell),
        M.el("td", { class: "num", text: o.mean === null ? "–" : o.mean.toFixed(2) })]
        .concat(["1", "2", "3", "4", "5"].map(function (k) {
          return countAndRate(o.distribution[k], undefined, minCell);
        })));
    });
    table(M.$("x-scores"), "Each referral's latest answers, all groups together",
          ["Statement", "Answers", "Mean", "1", "2", "3", "4", "5"], scores);
  }

  // ---------------------------------------------------------------- loading

  var SECTIONS = {
    outcomes: { path: "outcomes", group: "o-group", render: renderOutcomes },
    equity: { path: "outcomes", group: "e-group", render: renderEquity },
    fatigue: { path: "rule-fatigue", render: renderFatigue },
    load: { path: "staff-load", render: renderLoad },
    referrals: { path: "referrals", group: "x-group", render: renderReferrals }
  };

  function url(name) {
    var section = SECTIONS[name], params = windowQuery();
    if (section.group) params.set("group_by", M.$(section.group).value);
    return "/api/v1/reports/" + section.path + "?" + params.toString();
  }

  function loadSection(name) {
    return M.api("GET", url(name)).then(function (report) {
      reports[name] = report;
      M.$(name).hidden = false;
      SECTIONS[name].render(report);
      return report;
    });
  }

  function load() {
    defaults();
    var status = M.$("report-status");
    M.setStatus(status, "Loading…");
    return Promise.all(Object.keys(SECTIONS).map(loadSection)).then(function (answers) {
      var first = answers[0];
      M.$("window-words").textContent = windowWords("Contacts", first) + ", " +
        (first.organisation ? "organisation " + first.organisation
                            : "every organisation you may see") + ".";
      M.setStatus(status, "");
    }, function (err) {
      var errors = (err.problem && err.problem.errors) || {};
      var names = Object.keys(errors);
      M.setStatus(status, names.length ? names.map(function (n) {
        return n + ": " + errors[n].join(" ");
      }).join(" ") : M.friendlyError(err, "the reports:read scope"), "error");
      throw err;
    });
  }

  // The same report as CSV, saved under the name the server gives it.
  function download(name, button) {
    var status = M.$("report-status");
    button.disabled = true;
    return fetch(url(name), { headers: { "Accept": "text/csv" }, credentials: "same-origin",
                              cache: "no-store" }).then(function (response) {
      if (!response.ok) throw new Error("The CSV could not be made (HTTP " + response.status + ").");
      var disposition = response.headers.get("Content-Disposition") || "";
      var match = /filename="([^"]+)"/.exec(disposition);
      return response.blob().then(function (blob) {
        var link = M.el("a", { href: URL.createObjectURL(blob),
                               download: match ? match[1] : "report.csv" });
        document.body.appendChild(link);
        link.click();
        setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
      });
    }).catch(function (err) {
      M.setStatus(status, String(err.message || err), "error");
    }).then(function () { button.disabled = false; });
  }

  M.$("report-form").addEventListener("submit", function (event) {
    event.preventDefault();
    load().catch(function () { /* shown in the status line */ });
  });
  Object.keys(SECTIONS).forEach(function (name) {
    var select = SECTIONS[name].group && M.$(SECTIONS[name].group);
    if (select) {
      select.addEventListener("change", function () {
        loadSection(name).catch(function (err) {
          M.setStatus(M.$("report-status"), M.friendlyError(err), "error");
        });
      });
    }
  });
  Array.prototype.forEach.call(document.querySelectorAll("[data-csv]"), function (button) {
    button.addEventListener("click", function () {
      download(button.getAttribute("data-csv"), button);
    });
  });
  defaults();
  M.initSession(load, "the reports:read scope");
})();
