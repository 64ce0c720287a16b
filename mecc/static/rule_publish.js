/* Rule editor (/admin/rules): publishing with a second pair of eyes.

   Publish (and rollback, which is publishing an earlier version) first shows, in a dialog,
   what changes against the live version: expression, texts, thresholds, settings, roles,
   organisations; retire says which version stops. With MECC_PUBLISH_APPROVAL=required the
   answer is a request that someone else approves; the "Waiting for approval" list shows each
   request with the same diff and, to people with rules:approve who did not ask, Approve and
   Reject. The version history shows each version's changes against the one before it.

   Uses the kit and the editor's state from admin.js (window.Mecc, window.Mecc.ruleEditor).
   Text from the API is only ever inserted with textContent. */
(function () {
  "use strict";

  var M = window.Mecc;
  if (!M || !document.getElementById("publish-dialog")) return;
  var el = M.el, $ = M.$, clear = M.clear, api = M.api, setStatus = M.setStatus;
  var layout = $("rules-layout");
  var approvalRequired = layout.getAttribute("data-approval") !== "off";
  var mayApprove = layout.getAttribute("data-may-approve") === "true";
  var me = layout.getAttribute("data-actor") || "";
  var dialog = $("publish-dialog");
  var pending = null;  // what the open dialog would do: {kind, key, version}

  function editor() { return M.ruleEditor; }
  function ruleUrl(key) { return "/api/v1/rules/" + encodeURIComponent(key); }

  // ---------------------------------------------------------------------------- diff

  function show(value) {
    if (value === null || value === undefined || value === "") return "(none)";
    if (Array.isArray(value)) {
      if (!value.length) return "(none)";
      return value.map(function (v) {
        return typeof v === "object" ? (v.label + (v.url ? " | " + v.url : "")) : String(v);
      }).join(", ");
    }
    return String(value);
  }

  // One change: its label, then either a line diff (multi-line text) or before -> after.
  function renderChange(change, beforeLabel, afterLabel) {
    var body;
    if (change.lines) {
      body = el("pre", { class: "line-diff" }, change.lines.map(function (line) {
        var kind = line.op === "+" ? "added" : line.op === "-" ? "removed" : "same";
        return el("span", { class: kind }, line.op + " " + line.text + "\n");
      }));
    } else {
      body = el("dl", { class: "change" },
        el("dt", { text: beforeLabel }), el("dd", { class: "removed", text: show(change.before) }),
        el("dt", { text: afterLabel }), el("dd", { class: "added", text: show(change.after) }));
    }
    return el("li", { "data-field": change.field }, el("strong", { text: change.label }), body);
  }

  function renderDiff(node, diff) {
    clear(node);
    var before = diff.from ? "v" + diff.from : "nothing live";
    var after = "v" + diff.to;
    if (!diff.changes.length) {
      node.appendChild(el("p", { text: after + " says the same as " + before + "." }));
      return;
    }
    node.appendChild(el("p", { class: "diff-caption",
                               text: "What changes from " + before + " to " + after + ":" }));
    node.appendChild(el("ul", { class: "changes" }, diff.changes.map(function (c) {
      return renderChange(c, before, after);
    })));
  }

  function loadDiff(key, version, from) {
    var query = "?to=" + version + (from ? "&from=" + from : "");
    return api("GET", ruleUrl(key) + "/diff" + query);
  }

  // ---------------------------------------------------------------------------- dialog

  function openDialog(options) {
    pending = options;
    $("publish-dialog-heading").textContent = options.heading;
    $("publish-dialog-intro").textContent = options.intro;
    setStatus($("publish-dialog-status"), "");
    $("publish-confirm").hidden = !options.confirm;
    $("publish-confirm").textContent = options.confirm || "";
    $("approve-confirm").hidden = !options.review;
    $("reject-confirm").hidden = !options.review;
    $("reject-field").hidden = !options.review;
    $("reject-reason").value = "";
    var out = clear($("publish-diff"));
    if (typeof dialog.showModal === "function") dialog.showModal();
    else dialog.setAttribute("open", "");
    if (options.retire) {  // nothing to compare: the live version simply stops
      out.appendChild(el("p", { class: "diff-caption", text: options.version
        ? "v" + options.version + " stops: this rule raises no prompts until a version is " +
          "published again."
        : "No version is live: no prompt changes." }));
      return;
    }
    out.appendChild(el("p", { text: "Loading the changes…" }));
    loadDiff(options.key, options.version).then(function (diff) {
      renderDiff(out, diff);
    }, function (err) {
      clear(out).appendChild(el("p", { class: "status", "data-kind": "error",
                                       text: M.friendlyError(err) }));
    });
  }

  function closeDialog() {
    pending = null;
    if (typeof dialog.close === "function" && dialog.open) dialog.close();
    else dialog.removeAttribute("open");
  }

  function confirmPublish(version) {
    var state = editor().state;
    var rule = state.rule || {};
    var live = rule.active_version;
    var rollback = live && version < live;
    if (live === version) {
      setStatus($("save-status"), "Version " + version + " is already live.", "ok");
      return;
    }
    openDialog({
      kind: "publish", key: state.key, version: version,
      heading: (rollback ? "Roll back " : "Publish ") + state.key + " to version " + version + "?",
      intro: (live ? "Version " + live + " is live now. " : "No version is live now. ") +
             (approvalRequired
               ? "Publishing asks for approval: nothing changes for prompts until someone else " +
                 "with the rules:approve scope approves it."
               : "Workers use the new version for the next events, without a restart."),
      confirm: approvalRequired ? "Ask for approval" : "Publish now"
    });
  }

  function confirmRetire() {
    var state = editor().state;
    var rule = state.rule || {};
    var live = rule.active_version;
    openDialog({
      kind: "retire", retire: true, key: state.key, version: live,
      heading: "Retire " + state.key + "?",
      intro: "No version of it will be live" + (live ? " (v" + live + " is now)" : "") + ". " +
             (approvalRequired && live ? "Retiring asks for approval first." : ""),
      confirm: approvalRequired && live ? "Ask for approval" : "Retire now"
    });
  }

  function announce(text, kind) {
    setStatus($("save-status"), text, kind);
    setStatus($("approvals-status"), text, kind);
  }

  function afterChange() {
    var state = editor().state;
    var refresh = state.key ? editor().refresh() : editor().loadRules();
    return Promise.all([refresh, loadApprovals()]);
  }

  function act() {
    var job = pending;
    if (!job) return;
    var status = $("publish-dialog-status");
    var request;
    if (job.kind === "publish") {
      request = api("POST", ruleUrl(job.key) + "/publish", { version: job.version });
    } else if (job.kind === "retire") {
      request = api("POST", ruleUrl(job.key) + "/retire");
    } else {
      return;
    }
    setStatus(status, "Sending…");
    request.then(function (answer) {
      closeDialog();
      if (answer && answer.status === "pending_approval") {
        announce((answer.action === "retire" ? "Retiring " : "Version " + answer.rule.version +
                  " of ") + answer.rule.key + " is waiting for approval by someone else.", "ok");
      } else if (job.kind === "retire") {
        announce("Retired: no version of " + job.key + " is live.", "ok");
      } else {
        announce("Version " + job.version + " is live. Workers pick it up without a restart.",
                 "ok");
      }
      return afterChange();
    }, function (err) {
      setStatus(status, M.friendlyError(err, "the rules:write scope"), "error");
    });
  }

  // ---------------------------------------------------------------------------- approvals

  function review(item) {
    openDialog({
      kind: "review", key: item.rule.key, version: item.rule.version, request: item,
      retire: item.action === "retire",
      heading: "Review: " + (item.action === "retire" ? "retire " + item.rule.key
                                                       : "publish " + item.rule.key + " v" +
                                                         item.rule.version),
      intro: "Asked by " + item.requested_by + " on " + M.formatTime(item.requested_at) + ".",
      review: true
    });
    var own = item.requested_by === me;
    $("approve-confirm").disabled = own || !mayApprove;
    if (own) {
      setStatus($("publish-dialog-status"), "You asked for this change: someone else must " +
                "approve it. You may withdraw it with Reject.");
    }
  }

  function decide(approve) {
    var job = pending;
    if (!job || job.kind !== "review") return;
    var status = $("publish-dialog-status");
    var links = job.request.links;
    var reason = $("reject-reason").value.trim();
    if (!approve && !reason) {
      setStatus(status, "Say why it is rejected.", "error");
      $("reject-reason").focus();
      return;
    }
    setStatus(status, approve ? "Approving…" : "Rejecting…");
    var call = approve ? api("POST", links.approve) : api("POST", links.reject, { reason: reason });
    call.then(function () {
      closeDialog();
      announce(approve
        ? (job.request.action === "retire" ? job.key + " is retired."
                                           : "Version " + job.version + " of " + job.key +
                                             " is live.")
        : "Rejected: " + job.key + " v" + job.version + " stays as it was.", "ok");
      return afterChange();
    }, function (err) {
      setStatus(status, M.friendlyError(err, "the rules:approve scope"), "error");
    });
  }

  function loadApprovals() {
    var list = $("approval-list");
    return api("GET", "/api/v1/rule-approvals").then(function (page) {
      clear(list);
      var items = page.items || [];
      if (!items.length) list.appendChild(el("li", { class: "empty", text: "Nothing waiting." }));
      items.forEach(function (item) {
        var what = item.action === "retire" ? "Retire " + item.rule.key
                                            : "Publish " + item.rule.key + " v" + item.rule.version;
        var open = el("button", { type: "button", class: "secondary",
                                  "aria-label": "Review: " + what, text: "Review" });
        open.addEventListener("click", function () { review(item); });
        list.appendChild(el("li", { "data-key": item.rule.key },
          el("strong", { text: what }),
          el("span", { class: "hint", text: " asked by " + item.requested_by + ", " +
                                              M.formatTime(item.requested_at) }),
          " ", open));
      });
    }, function (err) {
      clear(list);
      setStatus($("approvals-status"), M.friendlyError(err), "error");
    });
  }

  // ---------------------------------------------------------------------------- history

  function renderVersions(body) {
    var state = editor().state;
    var live = state.rule ? state.rule.active_version : null;
    state.versions.forEach(function (v) {
      var copy = el("button", { type: "button", class: "link",
                                "aria-label": "Edit a copy of version " + v.version,
                                text: "Edit a copy" });
      copy.addEventListener("click", function () {
        editor().fillForm(v);
        editor().describeState(state.rule, v.version);
        $("f-when").focus();
      });
      var changes = el("button", { type: "button", class: "link", "aria-expanded": "false",
                                   "aria-label": "Changes in version " + v.version,
                                   text: "Changes" });
      var actions = el("td", { class: "row-actions" }, copy, changes);
      if (v.version !== live) {
        var label = live && v.version < live ? "Roll back to this version" : "Publish this version";
        var publish = el("button", { type: "button", class: "link",
                                     "aria-label": label + " (v" + v.version + ")", text: label });
        publish.addEventListener("click", function () { confirmPublish(v.version); });
        actions.appendChild(publish);
      }
      var row = el("tr", { "data-version": v.version },
        el("th", { scope: "row", text: "v" + v.version }),
        el("td", null, el("span", { class: "tag " + v.status, text: v.status })),
        el("td", { text: v.updated_by || "–" }),
        el("td", { text: M.formatTime(v.updated_at) }),
        actions);
      // The diff row exists only while it is open: the table otherwise has a row per version.
      var detail = el("tr", { class: "version-diff" },
                      el("td", { colspan: 5 }, el("div", { class: "diff" })));
      changes.addEventListener("click", function () {
        var opening = !detail.parentNode;
        changes.setAttribute("aria-expanded", String(opening));
        if (!opening) { detail.parentNode.removeChild(detail); return; }
        row.parentNode.insertBefore(detail, row.nextSibling);
        var out = detail.querySelector(".diff");
        out.textContent = "Loading…";
        var previous = v.version > 1 ? v.version - 1 : null;
        var diff = previous ? loadDiff(state.key, v.version, previous)
          : Promise.resolve({ from: null, to: 1, changes: [] });
        diff.then(function (d) {
          if (!previous) { out.textContent = "The first version."; return; }
          renderDiff(out, d);
        }, function (err) { out.textContent = M.friendlyError(err); });
      });
      body.appendChild(row);
    });
  }

  // ---------------------------------------------------------------------------- wiring

  $("publish-confirm").addEventListener("click", act);
  $("approve-confirm").addEventListener("click", function () { decide(true); });
  $("reject-confirm").addEventListener("click", function () { decide(false); });
  $("publish-cancel").addEventListener("click", closeDialog);
  dialog.addEventListener("cancel", function () { pending = null; });

  M.rulePublish = {
    confirmPublish: confirmPublish, confirmRetire: confirmRetire,
    renderVersions: renderVersions, loadApprovals: loadApprovals, renderDiff: renderDiff
  };
  loadApprovals();
})();
