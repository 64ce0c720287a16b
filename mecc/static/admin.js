/* Administrators' pages: a small kit shared by /admin/rules and /reports (session, fetch,
   DOM and SVG helpers, bar charts), then the rule editor. No framework, no build step.

   Only signed-in people are served these pages. Calls to the API carry the session cookie and
   the page's CSRF token (X-CSRFToken); no key is ever typed into or kept by the page. Text
   from the API is only ever inserted with textContent, never parsed as HTML. */
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg";
  var uid = 0;

  // ------------------------------------------------------------------------------------------
  // Kit

  function el(tag, attrs) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = String(value);
      else if (name === "class") node.setAttribute("class", value);
      else node.setAttribute(name, value === true ? "" : String(value));
    });
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(typeof child === "string" || typeof child === "number"
      ? document.createTextNode(String(child)) : child);
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function $(id) { return document.getElementById(id); }

  function setStatus(node, text, kind) {
    node.textContent = text || "";
    if (kind) node.setAttribute("data-kind", kind); else node.removeAttribute("data-kind");
  }

  // The session's CSRF token, rendered into the page by the server (admin_base.html).
  function csrfToken() {
    var meta = document.querySelector("meta[name='csrf-token']");
    return meta ? meta.getAttribute("content") : "";
  }

  function ApiError(status, problem) {
    this.status = status;
    this.problem = problem || {};
    this.message = describeProblem(this.problem, status);
  }
  ApiError.prototype = Object.create(Error.prototype);

  function describeProblem(problem, status) {
    var text = (problem && (problem.detail || problem.title)) || ("HTTP " + status);
    return text;
  }

  // One call to the JSON API as the signed-in person; resolves to the parsed body, or rejects
  // with an ApiError carrying the problem details.
  function api(method, path, body) {
    var options = { method: method, headers: { "Accept": "application/json" },
                    credentials: "same-origin", cache: "no-store" };
    if (method !== "GET" && method !== "HEAD") options.headers["X-CSRFToken"] = csrfToken();
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(path, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
        if (!response.ok) throw new ApiError(response.status, data);
        return data;
      });
    }, function () {
      throw new ApiError(0, { detail: "The server could not be reached." });
    });
  }

  function friendlyError(err, scopeWords) {
    if (!(err instanceof ApiError)) return String(err && err.message || err);
    if (err.status === 401) return "Your session has ended; sign in again.";
    if (err.status === 403) return "Your role may not do that: " + err.message +
      (scopeWords ? " It needs " + scopeWords + "." : "");
    return err.message;
  }

  // Load the page's data as the signed-in person. `load` returns a promise; a 401 means the
  // session has ended (idle or at its 12-hour limit), so the browser goes back to sign-in.
  function initSession(load, scopeWords) {
    var status = $("session-status"), workspace = $("workspace");
    setStatus(status, "Loading…");
    return load().then(function () {
      setStatus(status, "");
      workspace.hidden = false;
    }, function (err) {
      if (err instanceof ApiError && err.status === 401) { signInAgain(); return; }
      // A refusal hides the workspace; any other failure is the page's to explain.
      workspace.hidden = err instanceof ApiError && err.status === 403;
      setStatus(status, friendlyError(err, scopeWords), "error");
    });
  }

  function signInAgain() {
    var here = window.location.pathname + window.location.search;
    window.location.assign("/sign-in?next=" + encodeURIComponent(here));
  }

  function formatNumber(n) {
    return (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-GB");
  }
  function formatRate(r) {
    return (r === null || r === undefined) ? "–" : (Math.round(r * 1000) / 10) + "%";
  }
  function formatTime(iso) {
    if (!iso) return "–";
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
  }
  function words(slug) { return String(slug).replace(/_/g, " "); }

  function niceMax(value) {
    if (value <= 5) return 5;
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= value) return steps[i] * power;
    return 10 * power;
  }

  // A stacked bar chart as inline SVG. `rows`: [{label, values: {seriesKey: number}}];
  // `series`: [{key, label, color}]. Horizontal bars for categories, vertical columns for a
  // calendar (`vertical: true`). Every bar segment has a <title> with its number.
  function barChart(options) {
    var rows = options.rows, series = options.series;
    var id = "chart-" + (++uid);
    var totals = rows.map(function (row) {
      return series.reduce(function (sum, s) { return sum + (row.values[s.key] || 0); }, 0);
    });
    var max = niceMax(Math.max.apply(null, totals.concat([0])));
    var node = options.vertical ? verticalBars(rows, series, totals, max)
                                : horizontalBars(rows, series, totals, max);
    node.setAttribute("role", "img");
    node.setAttribute("aria-labelledby", id + "-title " + id + "-desc");
    node.insertBefore(svg("desc", { id: id + "-desc", text: options.description || "" }),
                      node.firstChild);
    node.insertBefore(svg("title", { id: id + "-title", text: options.title || "Chart" }),
                      node.firstChild);
    return node;
  }

  function segmentTitle(row, s) {
    return row.label + " — " + s.label + ": " + formatNumber(row.values[s.key] || 0);
  }

  function horizontalBars(rows, series, totals, max) {
    var width = 720, labelWidth = 190, valueWidth = 60, rowHeight = 26, top = 8;
    var barWidth = width - labelWidth - valueWidth;
    var height = top + rows.length * rowHeight + 24;
    var root = svg("svg", { viewBox: "0 0 " + width + " " + height,
                            preserveAspectRatio: "xMinYMin meet" });
    [0, 0.5, 1].forEach(function (f) {
      var x = labelWidth + f * barWidth;
      root.appendChild(svg("line", { class: "grid-line", x1: x, x2: x, y1: top,
                                     y2: top + rows.length * rowHeight }));
      root.appendChild(svg("text", { x: x, y: height - 6, "text-anchor": "middle",
                                     text: formatNumber(max * f) }));
    });
    rows.forEach(function (row, i) {
      var y = top + i * rowHeight;
      var label = row.label.length > 26 ? row.label.slice(0, 25) + "…" : row.label;
      root.appendChild(svg("text", { x: labelWidth - 8, y: y + rowHeight / 2 + 4,
                                     "text-anchor": "end" }, svg("title", { text: row.label }),
                           label));
      var x = labelWidth;
      series.forEach(function (s) {
        var value = row.values[s.key] || 0;
        if (!value) return;
        var w = value / max * barWidth;
        root.appendChild(svg("rect", { x: x, y: y + 4, width: Math.max(w, 1),
                                       height: rowHeight - 8, fill: s.color },
                             svg("title", { text: segmentTitle(row, s) })));
        x += w;
      });
      root.appendChild(svg("text", { x: x + 6, y: y + rowHeight / 2 + 4,
                                     text: formatNumber(totals[i]) }));
    });
    root.appendChild(svg("line", { class: "axis", x1: labelWidth, x2: labelWidth, y1: top,
                                   y2: top + rows.length * rowHeight }));
    return root;
  }

  function verticalBars(rows, series, totals, max) {
    var width = 720, height = 260, left = 48, right = 8, top = 10, bottom = 34;
    var plotW = width - left - right, plotH = height - top - bottom;
    var slot = plotW / Math.max(rows.length, 1);
    var barW = Math.max(2, Math.min(40, slot * 0.72));
    var every = Math.max(1, Math.ceil(rows.length / 10));
    var root = svg("svg", { viewBox: "0 0 " + width + " " + height,
                            preserveAspectRatio: "xMinYMin meet" });
    [0, 0.5, 1].forEach(function (f) {
      var y = top + plotH - f * plotH;
      root.appendChild(svg("line", { class: "grid-line", x1: left, x2: width - right,
                                     y1: y, y2: y }));
      root.appendChild(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end",
                                     text: formatNumber(max * f) }));
    });
    rows.forEach(function (row, i) {
      var x = left + i * slot + (slot - barW) / 2;
      var y = top + plotH;
      series.forEach(function (s) {
        var value = row.values[s.key] || 0;
        if (!value) return;
        var h = value / max * plotH;
        y -= h;
        root.appendChild(svg("rect", { x: x, y: y, width: barW, height: Math.max(h, 1),
                                       fill: s.color },
                             svg("title", { text: segmentTitle(row, s) })));
      });
      if (i % every === 0) {
        root.appendChild(svg("text", { x: x + barW / 2, y: height - bottom + 16,
                                       "text-anchor": "middle", text: row.short || row.label }));
      }
    });
    root.appendChild(svg("line", { class: "axis", x1: left, x2: width - right,
                                   y1: top + plotH, y2: top + plotH }));
    return root;
  }

  function legend(node, series) {
    clear(node);
    series.forEach(function (s) {
      var swatch = el("span", { class: "swatch" });
      swatch.style.background = s.color;
      node.appendChild(el("li", null, swatch, s.label));
    });
  }

  function table(caption, columns, rows) {
    var head = el("tr", null, columns.map(function (c) {
      return el("th", { scope: "col", class: c.num ? "num" : null, text: c.label });
    }));
    var body = rows.map(function (row) {
      return el("tr", null, columns.map(function (c, i) {
        var value = c.value(row);
        return i === 0 ? el("th", { scope: "row", text: value })
                       : el("td", { class: c.num ? "num" : null, text: value });
      }));
    });
    return el("div", { class: "table-wrap" },
              el("table", null, el("caption", { text: caption }), el("thead", null, head),
                 el("tbody", null, body)));
  }

  window.Mecc = {
    el: el, svg: svg, clear: clear, $: $, api: api, ApiError: ApiError, setStatus: setStatus,
    initSession: initSession, signInAgain: signInAgain, friendlyError: friendlyError, barChart: barChart,
    legend: legend, table: table, formatNumber: formatNumber, formatRate: formatRate,
    formatTime: formatTime, words: words
  };

  // ------------------------------------------------------------------------------------------
  // Rule editor (/admin/rules)

  var main = $("main");
  if (!main || main.getAttribute("data-page") !== "rules") return;

  var state = { key: null, isNew: false, versions: [], rule: null, validateSeq: 0,
                validateTimer: null, poll: null };
  var CHECK_GROUPS = { settings: "f-settings", staff_roles: "f-roles",
                       suggestions: "f-suggestions" };

  function loadRules() {
    var status = $("status-filter").value;
    return api("GET", "/api/v1/rules" + (status ? "?status=" + encodeURIComponent(status) : ""))
      .then(renderRuleList);
  }

  function renderRuleList(page) {
    var body = clear($("rule-list").tBodies[0]);
    var items = page.items || [];
    setStatus($("rules-status"), items.length ? items.length + " rules." : "No rules yet.");
    items.forEach(function (rule) {
      var open = el("button", { type: "button", class: "link",
                                "aria-label": "Open rule " + rule.key, text: "Open" });
      open.addEventListener("click", function () { openRule(rule.key); });
      var row = el("tr", { "data-key": rule.key },
        el("th", { scope: "row" }, el("span", { text: rule.title }), el("br"),
           el("code", { text: rule.key })),
        el("td", { text: words(rule.topic) }),
        el("td", null, el("span", { class: "tag " + rule.rule_status, text: rule.rule_status })),
        el("td", { class: "num", text: rule.active_version ? "v" + rule.active_version : "–" }),
        el("td", { class: "num", text: "v" + rule.latest_version }),
        el("td", { class: "num", text: rule.priority }),
        el("td", null, open));
      if (rule.key === state.key) row.setAttribute("aria-current", "true");
      body.appendChild(row);
    });
  }

  function showEditorSections(show) {
    ["editor", "dry-run", "backtest", "history"].forEach(function (id) { $(id).hidden = !show; });
  }

  function openRule(key) {
    setStatus($("save-status"), "");
    hideErrorSummary();
    return api("GET", "/api/v1/rules/" + encodeURIComponent(key)).then(function (rule) {
      state.key = key;
      state.pickerNewest = null;
      state.isNew = false;
      state.rule = rule;
      fillForm(rule);
      $("f-key").readOnly = true;
      describeState(rule, rule.version);
      showEditorSections(true);
      $("editor").focus();
      markCurrentRow();
      return Promise.all([loadVersions(), loadAudit()]);
    }, function (err) {
      setStatus($("rules-status"), friendlyError(err), "error");
    });
  }

  function markCurrentRow() {
    Array.prototype.forEach.call($("rule-list").tBodies[0].rows, function (row) {
      if (row.getAttribute("data-key") === state.key) row.setAttribute("aria-current", "true");
      else row.removeAttribute("aria-current");
    });
  }

  function describeState(rule, editing) {
    $("editor-heading").textContent = state.isNew ? "New rule" : "Rule " + rule.key;
    if (state.isNew) {
      $("editor-state").textContent = "Saving creates version 1 as a draft.";
      return;
    }
    $("editor-state").textContent = "Status: " + rule.rule_status +
      ". Live version: " + (rule.active_version ? "v" + rule.active_version : "none") +
      ". Latest: v" + rule.latest_version + ". Editing a copy of v" + editing +
      "; saving adds a new draft version.";
  }

  function newRule() {
    state.key = null;
    state.isNew = true;
    state.versions = [];
    fillForm({ key: "", title: "", topic: "", kind: "lifestyle_conversation", when: "",
               priority: 50, cooldown_days: 180, decline_days: 180, settings: [],
               staff_roles: [], suggestions: [], sources: [],
               prompt: { summary: "", detail: "", indicator: "info" } });
    $("f-key").readOnly = false;
    describeState(null);
    showEditorSections(true);
    $("backtest").hidden = true;
    $("history").hidden = true;
    markCurrentRow();
    $("f-key").focus();
  }

  function fillForm(rule) {
    $("f-key").value = rule.key || "";
    $("f-title").value = rule.title || "";
    $("f-topic").value = rule.topic || "";
    $("f-kind").value = rule.kind || "lifestyle_conversation";
    $("f-priority").value = rule.priority === undefined ? "" : rule.priority;
    $("f-cooldown").value = rule.cooldown_days === undefined ? "" : rule.cooldown_days;
    $("f-decline").value = rule.decline_days === undefined ? "" : rule.decline_days;
    $("f-when").value = rule.when || "";
    var prompt = rule.prompt || {};
    $("f-summary").value = prompt.summary || "";
    $("f-detail").value = prompt.detail || "";
    $("f-indicator").value = prompt.indicator || "info";
    Object.keys(CHECK_GROUPS).forEach(function (name) {
      var chosen = rule[name] || [];
      var box = $(CHECK_GROUPS[name]);
      box.setAttribute("data-order", JSON.stringify(chosen));
      Array.prototype.forEach.call(box.querySelectorAll("input[type=checkbox]"), function (c) {
        c.checked = chosen.indexOf(c.value) >= 0;
      });
    });
    $("f-sources").value = (rule.sources || []).map(function (s) {
      return s.url ? s.label + " | " + s.url : s.label;
    }).join("\n");
    clearInvalid();
    updateSummaryCount();
    validateWhen();
  }

  function integerOrRaw(value) {
    var text = value.trim();
    if (text === "") return undefined;
    return /^-?\d+$/.test(text) ? parseInt(text, 10) : text;  // the API names a bad value
  }

  function checked(name) {
    var box = $(CHECK_GROUPS[name]);
    var ticked = Array.prototype.filter.call(box.querySelectorAll("input[type=checkbox]"),
      function (c) { return c.checked; }).map(function (c) { return c.value; });
    // Keep the order the rule had (suggestions are offered in order), new ticks after.
    var before = JSON.parse(box.getAttribute("data-order") || "[]");
    var kept = before.filter(function (v) { return ticked.indexOf(v) >= 0; });
    return kept.concat(ticked.filter(function (v) { return kept.indexOf(v) < 0; }));
  }

  function readForm() {
    var body = {
      key: $("f-key").value.trim(), title: $("f-title").value.trim(),
      topic: $("f-topic").value.trim(), kind: $("f-kind").value, when: $("f-when").value,
      priority: integerOrRaw($("f-priority").value),
      cooldown_days: integerOrRaw($("f-cooldown").value),
      decline_days: integerOrRaw($("f-decline").value),
      settings: checked("settings"), staff_roles: checked("staff_roles"),
      prompt: { summary: $("f-summary").value, detail: $("f-detail").value,
                indicator: $("f-indicator").value },
      suggestions: checked("suggestions"),
      sources: $("f-sources").value.split("\n").map(function (line) {
        return line.trim();
      }).filter(Boolean).map(function (line) {
        var bar = line.lastIndexOf("|");
        if (bar < 0) return { label: line };
        return { label: line.slice(0, bar).trim(), url: line.slice(bar + 1).trim() };
      })
    };
    Object.keys(body).forEach(function (k) { if (body[k] === undefined) delete body[k]; });
    return body;
  }

  // --- live validation of `when`

  function scheduleValidate() {
    clearTimeout(state.validateTimer);
    state.validateTimer = setTimeout(validateWhen, 300);
  }

  function validateWhen() {
    var text = $("f-when").value;
    var out = $("when-errors");
    var seq = ++state.validateSeq;
    if (!text.trim()) {
      clear(out);
      $("f-when").removeAttribute("aria-invalid");
      return Promise.resolve();
    }
    return api("POST", "/api/v1/rules/validate", { when: text }).then(function (result) {
      if (seq !== state.validateSeq) return;  // a newer keystroke is being checked
      renderDiagnostics(text, result);
    }, function (err) {
      if (seq !== state.validateSeq) return;
      clear(out).appendChild(el("p", { class: "status", "data-kind": "error",
                                       text: friendlyError(err) }));
    });
  }

  function renderDiagnostics(text, result) {
    var out = clear($("when-errors"));
    var input = $("f-when");
    if (result.ok) {
      input.setAttribute("aria-invalid", "false");
      out.appendChild(el("p", { class: "when-ok", text: "✓ The expression is valid." }));
      return;
    }
    input.setAttribute("aria-invalid", "true");
    var lines = text.split("\n");
    result.errors.forEach(function (d) {
      var line = lines[d.line - 1] || "";
      var caret = new Array(Math.max(d.column, 1)).join(" ") + "^";
      out.appendChild(el("div", { class: "diagnostic" },
        el("span", { class: "where", text: "Line " + d.line + ", column " + d.column + ": " }),
        el("span", { class: "message", text: d.message }),
        d.hint ? el("span", { class: "hint-text", text: " " + d.hint }) : null,
        el("pre", { "aria-hidden": "true", text: line + "\n" + caret })));
    });
  }

  function updateSummaryCount() {
    var n = $("f-summary").value.length;
    $("summary-count").textContent = n + " characters" + (n > 140
      ? " — over 140; placeholders like {{ bmi }} are filled in when shown, so check the result"
      : "") + ".";
  }

  // --- saving, publishing, retiring

  function clearInvalid() {
    Array.prototype.forEach.call(document.querySelectorAll("#rule-form [data-path]"),
      function (node) { if (node.id !== "f-when") node.removeAttribute("aria-invalid"); });
  }

  function hideErrorSummary() { $("error-summary").hidden = true; }

  function fieldFor(path) {
    var parts = path.split(".");
    for (var n = parts.length; n > 0; n--) {
      var node = document.querySelector('#rule-form [data-path="' + parts.slice(0, n).join(".") +
                                        '"]');
      if (node) return node;
    }
    return null;
  }

  function showErrors(err) {
    var summary = $("error-summary"), list = clear(summary.querySelector("ul"));
    var errors = (err.problem && err.problem.errors) || {};
    clearInvalid();
    var paths = Object.keys(errors);
    if (!paths.length) list.appendChild(el("li", { text: friendlyError(err) }));
    paths.forEach(function (path) {
      var node = fieldFor(path);
      if (node) node.setAttribute("aria-invalid", "true");
      // Each message its own bullet: two problems in one field are two things to fix.
      errors[path].forEach(function (text) {
        list.appendChild(el("li", null, errorItem(node, path + ": " + text)));
      });
    });
    summary.hidden = false;
    summary.focus();
  }

  // A link to the field a message is about (opening its <details>), or the bare message.
  function errorItem(node, message) {
    if (!node) return message;
    var focusable = node.matches("fieldset") ? node.querySelector("input") : node;
    var link = el("a", { href: "#" + (focusable.id || node.id), text: message });
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var details = node.closest("details");
      if (details) details.open = true;
      focusable.focus();
    });
    return link;
  }

  function saveRule(event) {
    event.preventDefault();
    var body = readForm();
    var status = $("save-status");
    hideErrorSummary();
    setStatus(status, "Saving…");
    var request = state.isNew ? api("POST", "/api/v1/rules", body)
      : api("PUT", "/api/v1/rules/" + encodeURIComponent(state.key), body);
    request.then(function (saved) {
      state.isNew = false;
      state.key = saved.key;
      state.rule = saved;
      $("f-key").readOnly = true;
      describeState(saved, saved.version);
      setStatus(status, "Saved as version " + saved.version + " (draft). Publish it to make " +
                "it live.", "ok");
      showEditorSections(true);
      return Promise.all([loadRules(), loadVersions(), loadAudit()]);
    }, function (err) {
      setStatus(status, friendlyError(err, "the rules:write scope"), "error");
      if (err.status === 422) showErrors(err);
    });
  }

  // Publishing (or rolling back to an earlier version) and retiring are confirmed with the
  // diff against the live version first: mecc/static/rule_publish.js.
  function publishRule() {
    var version = parseInt($("publish-version").value, 10);
    if (state.key && version) window.Mecc.rulePublish.confirmPublish(version);
  }

  function retireRule() {
    if (state.key) window.Mecc.rulePublish.confirmRetire();
  }

  function refreshRule() {
    return api("GET", "/api/v1/rules/" + encodeURIComponent(state.key)).then(function (rule) {
      state.rule = rule;
      describeState(rule, rule.version);
      return Promise.all([loadRules(), loadVersions(), loadAudit()]);
    });
  }

  // --- versions and audit

  function loadVersions() {
    if (!state.key) return Promise.resolve();
    return api("GET", "/api/v1/rules/" + encodeURIComponent(state.key) + "/versions")
      .then(function (page) {
        state.versions = (page.items || []).slice().reverse();
        window.Mecc.rulePublish.renderVersions(clear($("version-list").tBodies[0]));
        fillVersionPickers();
      });
  }

  // Newest version first and chosen by default; a choice the user made is kept across a
  // reload only while no newer version has appeared (after "Save as new draft version" the
  // picker moves to the version just saved).
  function fillVersionPickers() {
    var newest = state.versions.length ? String(state.versions[0].version) : "";
    var grew = state.pickerNewest !== newest;
    state.pickerNewest = newest;
    [$("publish-version"), $("backtest-version")].forEach(function (select) {
      var chosen = select.value;
      clear(select);
      state.versions.forEach(function (v) {
        select.appendChild(el("option", { value: v.version,
                                          text: "v" + v.version + " (" + v.status + ")" }));
      });
      if (!grew && chosen && select.querySelector('option[value="' + chosen + '"]')) {
        select.value = chosen;
      } else {
        select.value = newest;
      }
    });
  }

  function loadAudit() {
    if (!state.key) return Promise.resolve();
    return api("GET", "/api/v1/audit?entity=rule&limit=20&key=" + encodeURIComponent(state.key))
      .then(function (page) {
        var list = clear($("audit-list"));
        (page.items || []).forEach(function (a) {
          var detail = a.detail && a.detail.version ? " v" + a.detail.version : "";
          list.appendChild(el("li", null, el("strong", { text: formatTime(a.at) }),
            " — " + words(a.action) + detail + " by " + a.actor));
        });
        if (!list.firstChild) list.appendChild(el("li", { text: "No entries." }));
      }, function (err) {
        clear($("audit-list")).appendChild(el("li", { text: friendlyError(err) }));
      });
  }

  // --- dry run

  function dryRun() {
    var out = clear($("dry-result"));
    var event;
    try {
      event = JSON.parse($("dry-event").value);
    } catch (e) {
      $("dry-event").setAttribute("aria-invalid", "true");
      out.appendChild(el("p", { class: "status", "data-kind": "error",
                                text: "The example event is not valid JSON: " + e.message }));
      return;
    }
    $("dry-event").removeAttribute("aria-invalid");
    out.appendChild(el("p", { class: "status", text: "Running…" }));
    api("POST", "/api/v1/rules/dry-run", { rules: [readForm()], events: [event],
                                          use_history: $("dry-history").checked })
      .then(function (result) {
        clear(out);
        result.results.forEach(function (r) { out.appendChild(renderDryRunEvent(r)); });
      }, function (err) {
        clear(out).appendChild(el("p", { class: "status", "data-kind": "error",
                                         text: friendlyError(err) }));
        var errors = (err.problem && err.problem.errors) || {};
        var items = [];
        Object.keys(errors).forEach(function (path) {
          errors[path].forEach(function (text) {
            items.push(el("li", { text: path + ": " + text }));
          });
        });
        if (items.length) out.appendChild(el("ul", null, items));
      });
  }

  function renderDryRunEvent(r) {
    var box = el("div", { class: "event-result" });
    box.appendChild(el("p", null, "Event ", el("code", { text: r.event_id }), " at " +
                       formatTime(r.occurred_at)));
    if (!r.matches.length) {
      box.appendChild(el("p", { class: "verdict nomatch",
                                text: "No match: the condition is not true for this event." }));
    }
    r.shown.forEach(function (s) {
      box.appendChild(el("p", { class: "verdict shown", text: "Would show: " + s.summary }));
    });
    r.deferred.forEach(function (s) {
      box.appendChild(el("p", { class: "verdict suppressed",
                                text: "Deferred (over the per-contact cap): " + s.summary }));
    });
    r.suppressed.forEach(function (s) {
      box.appendChild(el("p", { class: "verdict suppressed",
                                text: "Matched but suppressed (" + words(s.reason_code) + "): " +
                                      s.reason }));
    });
    r.matches.forEach(function (m) {
      if (!m.explanation) return;
      box.appendChild(el("p", { text: "Why it matched:" }));
      box.appendChild(el("ul", { class: "conditions" }, m.explanation.map(function (part) {
        var mark = part.value === true ? "✓ true" : part.value === false ? "✗ false" : "? unknown";
        return el("li", null, el("code", { text: part.condition }), " — " + mark);
      })));
    });
    return box;
  }

  // --- back-test

  function startBacktest() {
    var status = $("backtest-status"), out = clear($("backtest-result"));
    var days = integerOrRaw($("backtest-days").value);
    var version = parseInt($("backtest-version").value, 10) || undefined;
    if (state.poll) clearTimeout(state.poll);
    setStatus(status, "Starting…");
    api("POST", "/api/v1/rules/" + encodeURIComponent(state.key) + "/backtest",
        { version: version, days: days }).then(function (started) {
      pollBacktest(started.links.self, 0);
    }, function (err) {
      setStatus(status, friendlyError(err), "error");
      var errors = (err.problem && err.problem.errors) || {};
      Object.keys(errors).forEach(function (path) {
        out.appendChild(el("p", { text: path + ": " + errors[path].join(" ") }));
      });
    });
  }

  function pollBacktest(url, attempt) {
    var status = $("backtest-status");
    api("GET", url).then(function (bt) {
      if (bt.status === "done") {
        setStatus(status, "Done: v" + bt.rule.version + " over the last " + bt.days + " days.",
                  "ok");
        renderBacktest(bt.result);
        return;
      }
      if (bt.status === "failed") {
        setStatus(status, "The back-test failed: " + (bt.error || "unknown reason"), "error");
        return;
      }
      if (attempt > 400) {
        setStatus(status, "Still " + bt.status + " after several minutes; is a worker running?",
                  "error");
        return;
      }
      setStatus(status, bt.status === "queued" ? "Queued: waiting for a worker…"
                                               : "Running over stored events…");
      state.poll = setTimeout(function () { pollBacktest(url, attempt + 1); },
                              attempt < 10 ? 500 : 1500);
    }, function (err) { setStatus(status, friendlyError(err), "error"); });
  }

  function renderBacktest(result) {
    var out = clear($("backtest-result"));
    var t = result.totals;
    if (!result.complete) {
      out.appendChild(el("p", { class: "status", "data-kind": "error",
        text: "Stopped at the time limit: the counts cover the earliest events only." }));
    }
    out.appendChild(el("dl", { class: "totals" },
      [["Events scanned", t.events_scanned], ["Matches", t.matches],
       ["Would show", t.would_show], ["Would show a day", t.would_show_per_day],
       // The prompt budget: what it adds for one clinician on a day with contacts.
       ["Per clinician a day (median)", (t.per_clinician_day || {}).median],
       ["Per clinician a day (90th percentile)", (t.per_clinician_day || {}).p90]]
        .map(function (pair) {
          return el("div", null, el("dt", { text: pair[0] }),
                    el("dd", { text: formatNumber(pair[1]) }));
        })));
    var reasons = Object.keys(t.suppressed || {});
    out.appendChild(el("p", { text: reasons.length
      ? "Suppressed: " + reasons.map(function (r) {
          return words(r) + " " + formatNumber(t.suppressed[r]);
        }).join(", ") + "."
      : "No match was suppressed." }));
    var series = [{ key: "would_show", label: "Would show", color: "#005eb8" },
                  { key: "suppressed", label: "Matched, suppressed", color: "#8a5300" }];
    var rows = result.per_day.map(function (d) {
      return { label: d.day, short: d.day.slice(5),
               values: { would_show: d.would_show, suppressed: d.matches - d.would_show } };
    });
    var figure = el("figure", { class: "chart" },
      el("figcaption", { text: "Matches per day (UTC)" }),
      barChart({ rows: rows, series: series, vertical: true, title: "Matches per day",
                 description: "Would-show and suppressed matches for each day of the window." }));
    var key = el("ul", { class: "legend", "aria-hidden": "true" });
    legend(key, series);
    figure.appendChild(key);
    out.appendChild(figure);
    var numbers = el("details", { class: "numbers" },
                     el("summary", { text: "Per day, setting and organisation, and a sample" }));
    out.appendChild(numbers);
    out = numbers;
    var counts = [
      { label: "Events", num: true, value: function (r) { return formatNumber(r.events); } },
      { label: "Matches", num: true, value: function (r) { return formatNumber(r.matches); } },
      { label: "Would show", num: true,
        value: function (r) { return formatNumber(r.would_show); } }];
    out.appendChild(table("Per day", [{ label: "Day", value: function (r) { return r.day; } }]
      .concat(counts), result.per_day.slice().reverse()));
    out.appendChild(table("Per setting", [{ label: "Setting",
      value: function (r) { return words(r.setting); } }].concat(counts), result.per_setting));
    out.appendChild(table("Per organisation", [{ label: "Organisation",
      value: function (r) { return r.organisation; } }].concat(counts),
      result.per_organisation));
    out.appendChild(table("Sample of matched events (most recent first)", [
      { label: "Event", value: function (r) { return r.event; } },
      { label: "When", value: function (r) { return formatTime(r.occurred_at); } },
      { label: "Setting", value: function (r) { return words(r.setting); } },
      { label: "Organisation", value: function (r) { return r.organisation; } },
      { label: "Result", value: function (r) {
        return r.would_show ? "would show" : "suppressed: " + words(r.suppressed || "");
      } }], result.sample));
  }

  // --- wiring

  window.Mecc.ruleEditor = {
    state: state, refresh: refreshRule, loadRules: loadRules, fillForm: fillForm,
    describeState: describeState
  };

  $("status-filter").addEventListener("change", function () {
    loadRules().catch(function (err) {
      setStatus($("rules-status"), friendlyError(err), "error");
    });
  });
  $("new-rule").addEventListener("click", newRule);
  $("rule-form").addEventListener("submit", saveRule);
  $("publish-rule").addEventListener("click", publishRule);
  $("retire-rule").addEventListener("click", retireRule);
  $("f-when").addEventListener("input", scheduleValidate);
  $("f-summary").addEventListener("input", updateSummaryCount);
  $("dry-run-button").addEventListener("click", dryRun);
  $("backtest-start").addEventListener("click", startBacktest);

  initSession(loadRules, "the rules:read scope");
})();
