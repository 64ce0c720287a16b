// The staff screen: recent prompts on open, live prompts over EventSource, one-click outcomes.
// Every piece of prompt text reaches the page through textContent or createTextNode, never
// innerHTML: prompts are built from rule templates and integrator data.
"use strict";

(function () {
  const root = document.getElementById("screen");
  if (!root) return;

  const list = document.getElementById("prompts");
  const empty = document.getElementById("empty");
  const announcer = document.getElementById("announcer");
  const connection = document.getElementById("connection");
  const template = document.getElementById("card-template");
  const MAX_CARDS = 50;
  const INDICATORS = {
    critical: { icon: "\u203C", text: "Critical" },
    warning: { icon: "\u26A0", text: "Warning" },
    info: { icon: "\u2139", text: "Info" },
  };
  const STATUS = {
    new: "New", conversation_had: "Conversation had", referred: "Referred",
    declined: "Declined by the person", not_now: "Not now", not_appropriate: "Not appropriate",
  };

  let token = root.dataset.token;
  let expiresAt = Number(root.dataset.expiresAt) * 1000;
  const staffId = root.dataset.staffId || null;
  const mayWrite = root.dataset.mayWrite === "true";
  let lastEventId = null;
  let source = null;
  let retryDelay = 2000;
  let retryTimer = null;

  // ------------------------------------------------------------------ markdown, safely
  // Paragraphs, "- " / "1. " lists (with continuation lines), **bold**, *emphasis* and
  // [links](https://...); everything else is shown as the text it is.
  const INLINE = /\*\*(.+?)\*\*|\*([^*\s](?:[^*]*?[^*\s])?)\*|\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g;

  function appendInline(parent, text) {
    let at = 0;
    for (const match of text.matchAll(INLINE)) {
      if (match.index > at) parent.appendChild(document.createTextNode(text.slice(at, match.index)));
      if (match[1] !== undefined || match[2] !== undefined) {
        const el = document.createElement(match[1] !== undefined ? "strong" : "em");
        appendInline(el, match[1] !== undefined ? match[1] : match[2]);
        parent.appendChild(el);
      } else {
        parent.appendChild(link(match[3], match[4]));
      }
      at = match.index + match[0].length;
    }
    if (at < text.length) parent.appendChild(document.createTextNode(text.slice(at)));
  }

  function link(label, url) {
    const a = document.createElement("a");
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = label;
    return a;
  }

  function markdownBlocks(markdown) {
    const blocks = [];
    let current = null;
    for (const raw of String(markdown || "").replace(/\r\n?/g, "\n").split("\n")) {
      const line = raw.trim();
      const bullet = /^[-*+]\s+(.*)$/.exec(line);
      const numbered = /^(\d{1,9})[.)]\s+(.*)$/.exec(line);
      if (line === "") {
        current = null;
      } else if (bullet || numbered) {
        const type = bullet ? "ul" : "ol";
        if (!current || current.type !== type) {
          current = { type, items: [], start: numbered ? Number(numbered[1]) : 1 };
          blocks.push(current);
        }
        current.items.push(bullet ? bullet[1] : numbered[2]);
      } else if (current) {
        current.items[current.items.length - 1] += ` ${line}`; // a continuation line
      } else {
        current = { type: "p", items: [line] };
        blocks.push(current);
      }
    }
    return blocks;
  }

  function renderMarkdown(markdown, parent) {
    for (const block of markdownBlocks(markdown)) {
      if (block.type === "p") {
        const p = document.createElement("p");
        appendInline(p, block.items[0]);
        parent.appendChild(p);
        continue;
      }
      const listEl = document.createElement(block.type);
      if (block.type === "ol" && block.start !== 1) listEl.start = block.start;
      for (const text of block.items) {
        const li = document.createElement("li");
        appendInline(li, text);
        listEl.appendChild(li);
      }
      parent.appendChild(listEl);
    }
  }

  // ------------------------------------------------------------------ cards
  function cardFor(id) {
    return list.querySelector(`li[data-prompt-id="${CSS.escape(id)}"]`);
  }

  function setStatus(item, prompt) {
    item.dataset.status = prompt.status;
    item.querySelector(".card-status").textContent = STATUS[prompt.status] || prompt.status;
    for (const button of item.querySelectorAll("button.outcome")) {
      button.setAttribute("aria-pressed", String(button.dataset.outcome === prompt.status));
    }
  }

  function serviceItem(suggestion) {
    const li = document.createElement("li");
    const name = document.createElement("strong");
    name.textContent = suggestion.name || suggestion.label;
    li.appendChild(name);
    const contact = suggestion.contact || {};
    const bits = ["phone", "email", "website", "address"].filter((k) => contact[k]);
    for (const key of bits) {
      const span = document.createElement("span");
      span.className = "contact";
      if (key === "website" && /^https?:\/\//.test(contact[key])) {
        span.appendChild(link(contact[key], contact[key]));
      } else {
        span.textContent = contact[key];
      }
      li.appendChild(span);
    }
    if (suggestion.referral_url && /^https?:\/\//.test(suggestion.referral_url)) {
      const a = link("Make a referral", suggestion.referral_url);
      a.className = "referral";
      a.setAttribute("aria-label", `Make a referral to ${suggestion.name || suggestion.label}`);
      li.appendChild(a);
    }
    if (suggestion.self_referral) {
      const span = document.createElement("span");
      span.className = "contact";
      span.textContent = "Self-referral accepted";
      li.appendChild(span);
    }
    return li;
  }

  function buildCard(prompt) {
    const item = template.content.firstElementChild.cloneNode(true);
    item.dataset.promptId = prompt.id;
    item.dataset.createdAt = prompt.created_at || "";
    const article = item.querySelector("article");
    const indicator = INDICATORS[prompt.indicator] || INDICATORS.info;
    article.dataset.indicator = prompt.indicator in INDICATORS ? prompt.indicator : "info";
    item.querySelector(".badge-icon").textContent = indicator.icon;
    item.querySelector(".badge-text").textContent = indicator.text;
    item.querySelector(".topic").textContent = String(prompt.topic || "").replace(/_/g, " ");
    const summary = item.querySelector(".summary");
    summary.id = `summary-${prompt.id}`;
    summary.textContent = prompt.summary;
    article.setAttribute("aria-labelledby", summary.id);
    renderMarkdown(prompt.detail, item.querySelector(".detail-body"));

    const services = (prompt.suggestions || []).filter((s) => s && (s.name || s.label));
    if (services.length) {
      const ul = item.querySelector(".service-list");
      services.forEach((s) => ul.appendChild(serviceItem(s)));
      item.querySelector(".services").hidden = false;
    }
    const sources = (prompt.sources || []).filter((s) => s && s.label);
    if (sources.length) {
      const ul = item.querySelector(".source-list");
      for (const s of sources) {
        const li = document.createElement("li");
        if (s.url && /^https?:\/\//.test(s.url)) li.appendChild(link(s.label, s.url));
        else li.textContent = s.label;
        ul.appendChild(li);
      }
      item.querySelector(".sources").hidden = false;
    }
    const group = item.querySelector(".outcomes");
    group.setAttribute("aria-label", `Record the outcome: ${prompt.summary}`);
    if (mayWrite) {
      for (const button of group.querySelectorAll("button.outcome")) {
        button.addEventListener("click", () => recordOutcome(item, button.dataset.outcome));
      }
    } else {
      group.hidden = true;
    }
    setStatus(item, prompt);
    return item;
  }

  function placeCard(item) {
    // Newest on top, by creation time (a replay after a reconnect may bring older ones).
    const created = item.dataset.createdAt;
    let before = null;
    for (const other of list.children) {
      if ((other.dataset.createdAt || "") < created) { before = other; break; }
    }
    list.insertBefore(item, before);
    while (list.children.length > MAX_CARDS) list.lastElementChild.remove();
    empty.hidden = list.children.length > 0;
  }

  function showPrompt(prompt, announce) {
    const existing = cardFor(prompt.id);
    if (existing) {
      setStatus(existing, prompt);
      return;
    }
    placeCard(buildCard(prompt));
    if (announce) {
      const label = (INDICATORS[prompt.indicator] || INDICATORS.info).text;
      announcer.textContent = `New prompt, ${label}: ${prompt.summary}`;
    }
  }

  function updatePrompt(prompt) {
    const item = cardFor(prompt.id);
    if (item) setStatus(item, prompt); // a prompt this screen never showed stays away
  }

  // ------------------------------------------------------------------ outcomes
  async function recordOutcome(item, outcome) {
    const buttons = item.querySelectorAll("button.outcome");
    const error = item.querySelector(".card-error");
    error.hidden = true;
    buttons.forEach((b) => { b.disabled = true; });
    const body = { outcome };
    if (staffId) body.staff_id = staffId;
    try {
      const response = await fetch(`/api/v1/prompts/${encodeURIComponent(item.dataset.promptId)}/outcome`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Stream-Token": token },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(answer.detail || `The outcome was not saved (${response.status}).`);
      setStatus(item, answer);
      announcer.textContent = `Recorded: ${STATUS[outcome]}.`;
    } catch (err) {
      error.textContent = `${err.message} Please try again.`;
      error.hidden = false;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
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
      const response = await fetch("/api/v1/stream/recent", { headers: { "X-Stream-Token": token } });
      if (response.ok) {
        const answer = await response.json();
        answer.items.forEach((p) => showPrompt(p, false));
        lastEventId = String(answer.last_event_id);
      }
    } catch (err) {
      // Live prompts still arrive; the list fills as they do.
    }
    empty.hidden = list.children.length > 0;
    connect();
    scheduleRenewal();
  }

  start();
})();
