// The staff screen: each contact's prompts under whose they are and when the contact was,
// newest first; recent prompts on open, live ones over EventSource; outcomes in one click
// (a referral names its service). Text reaches the page through textContent only (see
// screen_text.js): prompts are built from rule templates and integrator data.
"use strict";

(function () {
  const root = document.getElementById("screen");
  if (!root) return;
  const T = window.MeccScreenText;
  const wording = JSON.parse(document.getElementById("wording").textContent);

  const contactsEl = document.getElementById("contacts");
  const earlier = document.getElementById("earlier");
  const earlierList = document.getElementById("earlier-contacts");
  const earlierToggle = document.getElementById("earlier-toggle");
  const empty = document.getElementById("empty");
  const announcer = document.getElementById("announcer");
  const connection = document.getElementById("connection");
  const contactTemplate = document.getElementById("contact-template");
  const cardTemplate = document.getElementById("card-template");

  const MAX_CONTACTS = 40;
  const FOLD_DELAY_MS = 4000; // a finished contact stays in view this long before it folds
  const staffId = root.dataset.staffId || null;
  const mayWrite = root.dataset.mayWrite === "true";
  const displaySeconds = Number(root.dataset.displaySeconds) || 0;
  const foldAfterMs = (Number(root.dataset.foldAfterSeconds) || 4 * 3600) * 1000;

  let token = root.dataset.token;
  let expiresAt = Number(root.dataset.expiresAt) * 1000;
  let lastEventId = null;
  let source = null;
  let retryDelay = 2000;
  let retryTimer = null;
  let foldTimer = null;

  const contacts = new Map(); // event id -> contact state
  const HANDLED = (status) => status !== "new" && status !== "deferred";

  // ------------------------------------------------------------------ contacts
  function contactOf(prompt) {
    const id = prompt.event;
    let c = contacts.get(id);
    if (c) return c;
    const section = contactTemplate.content.firstElementChild.cloneNode(true);
    const safeId = String(id).replace(/[^A-Za-z0-9-]/g, "");
    section.id = `contact-${safeId}`;
    section.dataset.event = id;
    const heading = section.querySelector("h2");
    heading.id = `person-${safeId}`;
    section.setAttribute("aria-labelledby", heading.id);
    const list = section.querySelector("ol.prompts");
    list.id = `prompts-${safeId}`;
    const toggle = section.querySelector(".contact-toggle");
    toggle.setAttribute("aria-controls", list.id);
    c = { id, section, list, toggle, person: prompt.person || { id: prompt.person_id },
          contact: prompt.contact || {}, userOpen: null, group: null };
    toggle.addEventListener("click", () => {
      c.userOpen = toggle.getAttribute("aria-expanded") !== "true";
      showOpen(c, c.userOpen);
    });
    contacts.set(id, c);
    return c;
  }

  function occurred(c) {
    const when = new Date(c.contact.occurred_at || 0);
    return Number.isNaN(when.getTime()) ? new Date(0) : when;
  }

  // The label is the clinical system's, held for a limited time: past it, the id only.
  function visiblePerson(c, now) {
    const expired = displaySeconds > 0
      && now - occurred(c) >= displaySeconds * 1000;
    return expired ? { ...c.person, display: null } : c.person;
  }

  function renderHeader(c, now) {
    const person = visiblePerson(c, now);
    c.section.querySelector(".person-label").textContent = T.personLabel(person);
    c.section.dataset.personId = person.id || "";
    const facts = c.section.querySelector(".person-facts");
    facts.textContent = T.personFacts(person, wording);
    facts.hidden = facts.textContent === "";
    const moment = occurred(c);
    const time = c.section.querySelector("time");
    time.dateTime = c.contact.occurred_at || "";
    time.textContent = T.contactTime(moment, now);
    c.section.querySelector(".ago").textContent = T.ago(moment, now);
    c.section.querySelector(".where").textContent = T.place(c.contact, wording);
  }

  function cards(c) {
    return Array.from(c.list.children);
  }

  function showOpen(c, open) {
    c.list.hidden = !open;
    c.toggle.setAttribute("aria-expanded", String(open));
    const waiting = cards(c).filter((li) => !HANDLED(li.dataset.status)).length;
    const total = cards(c).length;
    c.toggle.textContent = open ? "Hide prompts"
      : `Show ${total} prompt${total === 1 ? "" : "s"}${waiting ? ` (${waiting} waiting)` : ""}`;
    // The visible words first (what speech input users say), then whose they are.
    const who = c.section.querySelector(".person-label").textContent;
    c.toggle.setAttribute("aria-label", `${c.toggle.textContent} for ${who}`);
  }

  // Newest contact first and open; finished or old contacts fold into "Earlier".
  function regroup() {
    const now = new Date();
    const all = Array.from(contacts.values()).sort((a, b) => occurred(b) - occurred(a));
    while (all.length > MAX_CONTACTS) {
      const gone = all.pop();
      contacts.delete(gone.id);
      gone.section.remove();
    }
    const focused = document.activeElement;
    const groups = { current: [], earlier: [] };
    for (const c of all) {
      const done = cards(c).length > 0 && cards(c).every((li) => HANDLED(li.dataset.status));
      const old = now - occurred(c) >= foldAfterMs;
      const group = done || old ? "earlier" : "current";
      if (group !== c.group) {
        c.group = group;
        c.userOpen = null;
      }
      renderHeader(c, now);
      const byDefault = group === "current" && groups.current.length === 0;
      showOpen(c, c.userOpen === null ? byDefault : c.userOpen);
      groups[group].push(c.section);
    }
    putInOrder(contactsEl, groups.current);
    putInOrder(earlierList, groups.earlier);
    const count = groups.earlier.length;
    earlier.hidden = count === 0;
    const shown = earlierToggle.getAttribute("aria-expanded") === "true";
    earlierToggle.textContent = `${shown ? "Hide" : "Show"} ${count} earlier contact${count === 1 ? "" : "s"}`;
    empty.hidden = all.length > 0;
    keepFocus(focused);
  }

  // Moves only what is out of place: a moved node loses focus and whatever is typed in it.
  function putInOrder(parent, sections) {
    sections.forEach((section, index) => {
      if (parent.children[index] !== section) parent.insertBefore(section, parent.children[index] || null);
    });
  }

  // Focus never disappears into a folded list: it goes to the control that opens it.
  function keepFocus(focused) {
    if (!focused || focused === document.body || !document.contains(focused)) return;
    if (isShown(focused)) {
      if (document.activeElement !== focused) focused.focus();
      return;
    }
    const section = focused.closest("section.contact");
    const own = section ? contacts.get(section.dataset.event) : null;
    const target = [own && own.toggle, earlierToggle].find(isShown);
    if (target) target.focus();
  }

  function isShown(el) {
    return !!el && document.contains(el) && el.closest("[hidden]") === null;
  }

  function scheduleRegroup() {
    clearTimeout(foldTimer);
    foldTimer = setTimeout(regroup, FOLD_DELAY_MS);
  }

  earlierToggle.addEventListener("click", () => {
    const open = earlierToggle.getAttribute("aria-expanded") !== "true";
    earlierToggle.setAttribute("aria-expanded", String(open));
    earlierList.hidden = !open;
    regroup();
  });

  // ------------------------------------------------------------------ cards
  function cardFor(id) {
    for (const c of contacts.values()) {
      const item = c.list.querySelector(`li[data-prompt-id="${CSS.escape(id)}"]`);
      if (item) return item;
    }
    return null;
  }

  function serviceName(prompt, serviceId) {
    const found = (prompt.suggestions || []).find((s) => s && s.service_id === serviceId);
    return found ? (found.name || found.label) : null;
  }

  function handledLine(prompt) {
    const outcome = prompt.last_outcome || {};
    const bits = [T.named(wording.outcomes, prompt.status)];
    const service = outcome.service_id ? serviceName(prompt, outcome.service_id) : null;
    if (service) bits[0] += ` to ${service}`;
    if (outcome.recorded_by) bits.push(`recorded by ${outcome.recorded_by}`);
    if (outcome.recorded_at) bits.push(T.clock(new Date(outcome.recorded_at)));
    return `\u2713 ${bits.join(" · ")}`;
  }

  function setStatus(item, prompt) {
    item.dataset.status = prompt.status;
    item.prompt = prompt;
    item.querySelector(".card-status").textContent = HANDLED(prompt.status)
      ? T.named(wording.outcomes, prompt.status) : (prompt.status === "new" ? "New" : "Deferred");
    for (const button of item.querySelectorAll("button.outcome")) {
      button.setAttribute("aria-pressed", String(button.dataset.outcome === prompt.status));
    }
    const handled = HANDLED(prompt.status);
    item.querySelector(".handled").hidden = !handled;
    item.querySelector(".handled-line").textContent = handled ? handledLine(prompt) : "";
    const toggle = item.querySelector(".handled-toggle");
    const open = handled && toggle.getAttribute("aria-expanded") === "true";
    item.querySelector(".card-body").hidden = handled && !open;
    item.classList.toggle("is-handled", handled);
  }

  function addContactLine(li, key, value) {
    if (!value) return;
    if (key === "phone") {
      const a = document.createElement("a");
      a.href = `tel:${String(value).replace(/[^0-9+]/g, "")}`;
      a.textContent = value;
      a.className = "phone";
      li.appendChild(a);
    } else if (key === "email") {
      const a = document.createElement("a");
      a.href = `mailto:${value}`;
      a.textContent = value;
      a.className = "email";
      li.appendChild(a);
    } else if (key === "url" && T.isWebUrl(value)) {
      const a = T.link("Website", value);
      a.className = "website";
      li.appendChild(a);
    }
  }

  function serviceItem(s) {
    const li = document.createElement("li");
    li.className = "service";
    if (s.service_id) li.dataset.serviceId = s.service_id;
    const name = document.createElement("strong");
    name.textContent = s.name || s.label;
    li.appendChild(name);
    const contact = s.contact || {};
    // The directory's field is `url`; older prompts may still say `website`.
    for (const key of ["phone", "email", "url"]) addContactLine(li, key, contact[key] || (key === "url" ? contact.website : null));
    if (T.isWebUrl(s.referral_url)) {
      const a = T.link("Make a referral", s.referral_url);
      a.className = "referral";
      a.setAttribute("aria-label", `Make a referral to ${s.name || s.label}`);
      li.appendChild(a);
    }
    if (s.self_referral) {
      const span = document.createElement("span");
      span.className = "self-referral";
      span.textContent = "Self-referral accepted";
      li.appendChild(span);
    }
    return li;
  }

  function gapItem(text) {
    const li = document.createElement("li");
    li.className = "gap";
    li.textContent = text;
    return li;
  }

  // Services grouped by type: local ones; a plain line when only national ones (or none) are
  // in the directory for this person's area.
  function renderServices(item, prompt) {
    const ul = item.querySelector(".service-list");
    const byType = new Map();
    for (const s of prompt.suggestions || []) {
      if (!s || !(s.name || s.label)) continue;
      const type = s.service_type || "";
      if (!byType.has(type)) byType.set(type, []);
      byType.get(type).push(s);
    }
    for (const [type, list] of byType) {
      const typeName = T.named(wording.service_types, type);
      const listed = list.filter((s) => s.service_id);
      if (!listed.length) {
        ul.appendChild(gapItem(`No ${typeName} service for this person's area is in the directory. Ask your team about local options.`));
        continue;
      }
      if (listed.every((s) => s.national === true)) {
        ul.appendChild(gapItem(`No local ${typeName} service is listed for this person's area; the national service:`));
      }
      listed.forEach((s) => ul.appendChild(serviceItem(s)));
    }
    item.querySelector(".services").hidden = ul.children.length === 0;
  }

  function buildCard(prompt) {
    const item = cardTemplate.content.firstElementChild.cloneNode(true);
    item.dataset.promptId = prompt.id;
    item.dataset.createdAt = prompt.created_at || "";
    item.dataset.priority = String(prompt.priority || 0);
    const article = item.querySelector("article");
    const indicator = ["critical", "warning", "info"].includes(prompt.indicator) ? prompt.indicator : "info";
    article.dataset.indicator = indicator;
    item.querySelector(".priority").textContent = T.named(wording.priorities, indicator);
    item.querySelector(".topic").textContent = T.named(wording.topics, prompt.topic);
    const summary = item.querySelector(".summary");
    summary.id = `summary-${String(prompt.id).replace(/[^A-Za-z0-9-]/g, "")}`;
    summary.textContent = prompt.summary;
    article.setAttribute("aria-labelledby", summary.id);
    const reading = T.readings(prompt.evidence, wording, new Date());
    const readingEl = item.querySelector(".reading");
    readingEl.textContent = reading;
    readingEl.hidden = reading === "";
    T.renderMarkdown(prompt.detail, item.querySelector(".detail-body"));
    renderServices(item, prompt);
    const sources = (prompt.sources || []).filter((s) => s && s.label);
    if (sources.length) {
      const ul = item.querySelector(".source-list");
      for (const s of sources) {
        const li = document.createElement("li");
        if (T.isWebUrl(s.url)) li.appendChild(T.link(s.label, s.url));
        else li.textContent = s.label;
        ul.appendChild(li);
      }
      item.querySelector(".sources").hidden = false;
    }
    const handledToggle = item.querySelector(".handled-toggle");
    const nameToggle = (open) => {
      handledToggle.textContent = open ? "Hide" : "Show";
      handledToggle.setAttribute("aria-label", `${handledToggle.textContent} details: ${prompt.summary}`);
    };
    nameToggle(false);
    handledToggle.addEventListener("click", () => {
      const open = handledToggle.getAttribute("aria-expanded") !== "true";
      handledToggle.setAttribute("aria-expanded", String(open));
      nameToggle(open);
      item.querySelector(".card-body").hidden = !open;
    });
    if (mayWrite) wireOutcomes(item, prompt);
    setStatus(item, prompt);
    return item;
  }

  function placeCard(c, item) {
    // Highest priority first, then newest.
    const key = (li) => [Number(li.dataset.priority), li.dataset.createdAt || ""];
    const [p, created] = key(item);
    let before = null;
    for (const other of c.list.children) {
      const [op, oc] = key(other);
      if (op < p || (op === p && oc < created)) { before = other; break; }
    }
    c.list.insertBefore(item, before);
  }

  function showPrompt(prompt, announce, now = true) {
    const c = contactOf(prompt);
    if (prompt.person) c.person = prompt.person; // the latest word (an erased label is null)
    if (prompt.contact) c.contact = prompt.contact;
    const existing = cardFor(prompt.id);
    if (existing) {
      setStatus(existing, prompt);
    } else {
      const item = buildCard(prompt);
      placeCard(c, item);
      if (announce) {
        // Only a live arrival moves; a list opened or regrouped later does not replay it.
        item.classList.add("arriving");
        item.addEventListener("animationend", () => item.classList.remove("arriving"), { once: true });
        const who = T.personLabel(visiblePerson(c, new Date()));
        announcer.textContent = `New prompt for ${who}: ${prompt.summary}`;
      }
    }
    if (now) regroup();
  }

  function updatePrompt(prompt) {
    const item = cardFor(prompt.id);
    if (!item) return; // a prompt this screen never showed stays away
    const c = contacts.get(prompt.event);
    if (c && prompt.person) c.person = prompt.person;
    setStatus(item, prompt);
    if (c) renderHeader(c, new Date());
    scheduleRegroup();
  }

  // ------------------------------------------------------------------ outcomes
  function wireOutcomes(item, prompt) {
    item.querySelector(".outcomes").setAttribute("aria-label", `Record the outcome: ${prompt.summary}`);
    const panel = item.querySelector(".refer-panel");
    const choices = item.querySelector(".refer-choices");
    const listed = (prompt.suggestions || []).filter((s) => s && s.service_id);
    for (const s of listed) {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "refer-choice";
      button.dataset.serviceId = s.service_id;
      button.textContent = s.name || s.label;
      button.addEventListener("click", () => recordOutcome(item, "referred", s.service_id));
      li.appendChild(button);
      choices.appendChild(li);
    }
    const elsewhere = document.createElement("li");
    const other = document.createElement("button");
    other.type = "button";
    other.className = "refer-choice refer-elsewhere";
    other.textContent = "Somewhere not listed here";
    other.addEventListener("click", () => recordOutcome(item, "referred", null));
    elsewhere.appendChild(other);
    choices.appendChild(elsewhere);
    item.querySelector(".refer-cancel").addEventListener("click", () => {
      panel.hidden = true;
      item.querySelector("button[data-outcome=referred]").focus();
    });
    for (const button of item.querySelectorAll("button.outcome")) {
      button.addEventListener("click", () => {
        if (button.dataset.outcome === "referred" && listed.length) {
          panel.hidden = false;
          choices.querySelector("button").focus();
          return;
        }
        recordOutcome(item, button.dataset.outcome, null);
      });
    }
  }

  function failure(status, detail) {
    if (status === 0) return "Not saved: the screen could not reach the prompt service. Check the connection, then choose the outcome again.";
    if (status === 401) return "Not saved: this screen link has expired. Open the prompt screen again from your clinical system, then record the outcome.";
    if (status === 403) return "Not saved: this screen may not record outcomes. Record what happened in your clinical system.";
    if (status === 404) return "Not saved: this prompt is no longer available to this screen. Open the screen again from your clinical system.";
    if (status === 429) return "Not saved: too many requests just now. Wait a moment, then choose the outcome again.";
    if (status >= 500) return `Not saved: the prompt service had a problem (error ${status}). Try again; if it keeps failing, record the outcome in your clinical system.`;
    return `Not saved: ${detail || `the outcome was refused (error ${status})`}. Check it and choose again.`;
  }

  async function recordOutcome(item, outcome, serviceId) {
    const controls = item.querySelectorAll("button.outcome, button.refer-choice");
    const error = item.querySelector(".card-error");
    const note = item.querySelector(".note-text");
    error.hidden = true;
    controls.forEach((b) => { b.disabled = true; });
    const body = { outcome };
    if (staffId) body.staff_id = staffId;
    if (serviceId) body.service_id = serviceId;
    if (note && note.value.trim()) body.note = note.value.trim();
    let status = 0;
    let answer = {};
    try {
      const response = await fetch(`/api/v1/prompts/${encodeURIComponent(item.dataset.promptId)}/outcome`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Stream-Token": token },
        body: JSON.stringify(body),
      });
      status = response.status;
      answer = await response.json().catch(() => ({}));
    } catch (err) {
      status = 0;
    }
    controls.forEach((b) => { b.disabled = false; });
    if (status !== 201 && status !== 200) {
      error.textContent = failure(status, answer.detail);
      error.hidden = false;
      return;
    }
    item.querySelector(".refer-panel").hidden = true;
    if (note) {
      note.value = "";
      item.querySelector("details.note").open = false;
    }
    const { outcomes: _history, ...prompt } = answer;
    setStatus(item, prompt);
    const c = contacts.get(prompt.event);
    const who = c ? T.personLabel(visiblePerson(c, new Date())) : "";
    announcer.textContent = `Recorded for ${who}: ${handledLine(prompt).slice(2)}.`;
    item.querySelector(".handled-toggle").focus(); // the buttons are folded away now
    scheduleRegroup();
  }

  // ------------------------------------------------------------------ connection
  function showConnection(state, text) {
    connection.dataset.state = state;
    connection.textContent = text;
  }

  function connect() {
    if (source) source.close();
    clearTimeout(retryTimer);
    const params = new URLSearchParams({ token });
    if (lastEventId !== null) params.set("last_event_id", lastEventId);
    source = new EventSource(`/api/v1/stream?${params}`);
    source.onopen = () => { retryDelay = 2000; showConnection("live", "Live"); };
    const onMessage = (handler) => (event) => {
      if (event.lastEventId) lastEventId = event.lastEventId;
      handler(JSON.parse(event.data));
    };
    source.addEventListener("prompt", onMessage((p) => showPrompt(p, true)));
    source.addEventListener("prompt-updated", onMessage(updatePrompt));
    source.onerror = () => {
      if (source.readyState === EventSource.CONNECTING) {
        showConnection("reconnecting", "Reconnecting…"); // the browser retries by itself
        return;
      }
      // Closed: the server refused (token expired or revoked) or is down. Try again, slower.
      if (Date.now() >= expiresAt) {
        showConnection("expired", "This screen link has expired. Open it again from your clinical system.");
        return;
      }
      showConnection("reconnecting", "Reconnecting…");
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    };
  }

  async function renewToken() {
    try {
      const response = await fetch("/api/v1/stream-tokens/renew", {
        method: "POST", headers: { "X-Stream-Token": token },
      });
      if (!response.ok) throw new Error(String(response.status));
      const answer = await response.json();
      token = answer.token;
      expiresAt = Date.parse(answer.expires_at);
      const url = new URL(window.location.href);
      url.searchParams.set("token", token);
      window.history.replaceState(null, "", url); // a reload keeps working
      connect(); // the old stream ends when the old token does
      scheduleRenewal();
    } catch (err) {
      if (Date.now() < expiresAt - 5000) setTimeout(renewToken, 5000);
    }
  }

  function scheduleRenewal() {
    const left = expiresAt - Date.now();
    setTimeout(renewToken, Math.max(1000, left * 2 / 3));
  }

  async function start() {
    try {
      const response = await fetch("/api/v1/stream/recent?limit=100", { headers: { "X-Stream-Token": token } });
      if (response.ok) {
        const answer = await response.json();
        answer.items.forEach((p) => showPrompt(p, false, false));
        lastEventId = String(answer.last_event_id);
      }
    } catch (err) {
      // Live prompts still arrive; the screen fills as they do.
    }
    regroup();
    connect();
    scheduleRenewal();
    // Times ("12 min ago"), labels past their retention and contacts to fold move on.
    setInterval(regroup, 15000);
  }

  start();
})();
