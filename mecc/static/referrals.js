/* The referral follow-up page (/referrals): list referrals, open one, move it on (the API says
   which statuses may come next), and record the person's own view (six statements, 1-5).
   Calls the API as the signed-in person (window.Mecc from admin.js). */
(function () {
  "use strict";

  var M = window.Mecc;
  var main = M.$("main");
  if (!main || main.getAttribute("data-page") !== "referrals") return;

  var current = null;  // the open referral's id
  var ITEMS = Array.prototype.map.call(document.querySelectorAll("#outcome-form fieldset"),
                                       function (f) { return f.getAttribute("data-item"); });
  var LABELS = { requested: "Waiting", accepted: "Accepted", declined: "Declined",
                 attended: "Attended", did_not_attend: "Did not attend", closed: "Closed" };

  function words(status) { return LABELS[status] || M.words(status); }

  function loadList() {
    var params = new URLSearchParams({ limit: "100" });
    if (M.$("q-status").value) params.set("status", M.$("q-status").value);
    var person = M.$("q-person").value.trim();
    if (person) params.set("person_id", person);
    return M.api("GET", "/api/v1/referrals?" + params.toString()).then(renderList);
  }

  function renderList(page) {
    var body = M.clear(M.$("referral-list").tBodies[0]);
    M.setStatus(M.$("list-status"), page.items.length ? page.items.length + " referral(s)."
                                                       : "No referrals match.");
    page.items.forEach(function (r) {
      var open = M.el("button", { type: "button", class: "link", text: "Open",
                                  "aria-label": "Open referral of " + r.person_id + " to " +
                                  r.service.name });
      open.addEventListener("click", function () { openReferral(r.id); });
      body.appendChild(M.el("tr", { "data-id": r.id },
        M.el("td", { text: M.formatTime(r.opened_at) }), M.el("td", { text: r.person_id }),
        M.el("td", { text: r.service.name }), M.el("td", { text: M.words(r.topic) }),
        M.el("td", { text: words(r.status) }), M.el("td", null, open)));
    });
  }

  function openReferral(id) {
    return M.api("GET", "/api/v1/referrals/" + encodeURIComponent(id)).then(function (r) {
      current = r.id;
      render(r);
      M.$("referral").hidden = false;
      M.$("referral").focus();
    }, function (err) { M.setStatus(M.$("list-status"), M.friendlyError(err), "error"); });
  }

  function render(r) {
    M.$("referral-heading").textContent = "Referral to " + r.service.name;
    var facts = M.clear(M.$("referral-facts"));
    [["Person", r.person_id], ["Status", words(r.status)],
     ["Opened", M.formatTime(r.opened_at)], ["Topic", M.words(r.topic)],
     ["Attendance", r.attendance ? words(r.attendance) : "Not yet known"]]
      .forEach(function (pair) {
        facts.appendChild(M.el("div", null, M.el("dt", { text: pair[0] }),
                               M.el("dd", { text: pair[1] })));
      });
    var buttons = M.clear(M.$("status-buttons"));
    if (!r.next_statuses.length) {
      buttons.appendChild(M.el("p", { class: "hint", text: "Closed: nothing more to do." }));
    }
    r.next_statuses.forEach(function (status) {
      var button = M.el("button", { type: "button", class: "secondary",
                                    text: "Mark " + words(status).toLowerCase() });
      button.addEventListener("click", function () { moveTo(status); });
      buttons.appendChild(button);
    });
    var history = M.clear(M.$("referral-history"));
    r.history.forEach(function (h) {
      history.appendChild(M.el("li", null, M.el("strong", { text: words(h.status) }),
        " — " + M.formatTime(h.recorded_at) + " by " + h.recorded_by,
        h.note ? M.el("div", { class: "hint", text: h.note }) : null));
    });
    renderOutcomes(r.personal_outcomes);
  }

  function renderOutcomes(records) {
    var node = M.clear(M.$("outcome-list"));
    if (!records.length) return;
    node.appendChild(M.el("caption", { text: "Answers recorded" }));
    node.appendChild(M.el("thead", null, M.el("tr", null,
      M.el("th", { scope: "col", text: "Answered" }),
      ITEMS.map(function (item) {
        return M.el("th", { scope: "col", class: "num",
                            text: M.$("s-" + item).querySelector("legend").textContent });
      }))));
    node.appendChild(M.el("tbody", null, records.map(function (p) {
      return M.el("tr", null, M.el("th", { scope: "row", text: M.formatTime(p.recorded_at) }),
        ITEMS.map(function (item) {
          var score = p.scores[item];
          return M.el("td", { class: "num", text: score === undefined ? "–" : String(score) });
        }));
    })));
  }

  function moveTo(status) {
    var result = M.$("status-result");
    var body = { status: status };
    var note = M.$("status-note").value.trim();
    if (note) body.note = note;
    return M.api("POST", "/api/v1/referrals/" + current + "/status", body).then(function (r) {
      M.$("status-note").value = "";
      M.setStatus(result, "Now: " + words(r.status) + ".", "ok");
      render(r);
      return loadList();
    }, function (err) { M.setStatus(result, M.friendlyError(err, "prompts:write"), "error"); });
  }

  function localNow() {
    var d = new Date();
    d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
    return d.toISOString().slice(0, 16);
  }

  function saveOutcomes(event) {
    event.preventDefault();
    var result = M.$("outcome-result");
    var scores = {};
    ITEMS.forEach(function (item) {
      var chosen = document.querySelector("input[name='" + item + "']:checked");
      if (chosen && chosen.value) scores[item] = Number(chosen.value);
    });
    var at = new Date(M.$("outcome-at").value);
    if (isNaN(at)) { M.setStatus(result, "Give the date and time of the answers.", "error"); return; }
    M.api("POST", "/api/v1/referrals/" + current + "/personal-outcomes",
          { recorded_at: at.toISOString(), scores: scores }).then(function (r) {
      M.setStatus(result, "Answers recorded.", "ok");
      render(r);
    }, function (err) {
      var errors = (err.problem && err.problem.errors) || {};
      var names = Object.keys(errors);
      M.setStatus(result, names.length ? names.map(function (n) {
        return n.replace("scores.", "") + ": " + errors[n].join(" ");
      }).join(" ") : M.friendlyError(err, "prompts:write"), "error");
    });
  }

  M.$("referral-filters").addEventListener("submit", function (event) {
    event.preventDefault();
    loadList().catch(function (err) {
      M.setStatus(M.$("list-status"), M.friendlyError(err), "error");
    });
  });
  M.$("outcome-form").addEventListener("submit", saveOutcomes);
  M.$("outcome-at").value = localNow();
  M.initSession(loadList, "the prompts:read scope");
})();
