// The staff screen's words: prompt markdown made safe, and readings, times, people and topics
// put in plain words from the server's wording (mecc/prompts/wording.py). Pure helpers on
// window.MeccScreenText; every piece of text reaches the page as text, never as markup.
"use strict";

(function () {
  // ---------------------------------------------------------------- markdown, safely
  // Paragraphs, "- " / "1. " lists (with continuation lines), **bold**, *emphasis* and
  // [links](https://...); everything else is shown as the text it is.
  const INLINE = /\*\*(.+?)\*\*|\*([^*\s](?:[^*]*?[^*\s])?)\*|\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g;

  function isWebUrl(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url);
  }

  function link(label, url) {
    const a = document.createElement("a");
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = label;
    return a;
  }

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

  // ---------------------------------------------------------------- words
  function words(code) {
    const text = String(code || "").replace(/_/g, " ");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function named(table, code) {
    return (table && table[code]) || words(code);
  }

  // A date as sent ("2026-03-03") is a calendar day, not midnight UTC: read it as local.
  function parseWhen(value) {
    const day = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(value || ""));
    if (day) return new Date(Number(day[1]), Number(day[2]) - 1, Number(day[3]));
    const moment = new Date(value);
    return Number.isNaN(moment.getTime()) ? null : moment;
  }

  function shortDate(value, now) {
    const when = parseWhen(value);
    if (!when) return "";
    const options = { day: "numeric", month: "short" };
    if (when.getFullYear() !== (now || new Date()).getFullYear()) options.year = "numeric";
    return when.toLocaleDateString("en-GB", options);
  }

  function clock(moment) {
    return moment.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
  }

  function ago(moment, now) {
    const minutes = Math.floor(((now || new Date()) - moment) / 60000);
    if (minutes < 1) return "just now";
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return `${hours} h ${minutes % 60} min ago`;
    const days = Math.floor(hours / 24);
    return days === 1 ? "yesterday" : `${days} days ago`;
  }

  // "09:30", or "Tue 3 Mar, 09:30" for another day: when the contact happened.
  function contactTime(moment, now) {
    const today = (now || new Date()).toDateString() === moment.toDateString();
    if (today) return clock(moment);
    const day = moment.toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short" });
    return `${day}, ${clock(moment)}`;
  }

  // One reading a rule rested on, as a nurse says it: "PHQ-2 of 4", "BMI 32.1 on 3 Mar".
  function reading(item, wording, now) {
    if (!item || typeof item.fact !== "string") return "";
    if ((wording.not_readings || []).includes(item.fact)) return "";
    const spec = (wording.facts || {})[item.fact] || {};
    const value = item.value;
    let text;
    if (spec.style === "score") {
      text = `${spec.label} of ${value}`;
    } else if (spec.style === "measure") {
      const number = typeof value === "number" ? String(Math.round(value * 10) / 10) : String(value);
      text = `${spec.label} ${number}${spec.unit ? ` ${spec.unit}` : ""}`;
    } else if (spec.style === "choice" || spec.style === "flag") {
      text = (spec.values || {})[String(value)] || `${words(item.fact)}: ${words(String(value))}`;
    } else {
      text = `${words(item.fact)} ${value}`;
    }
    const date = item.recorded_at ? shortDate(item.recorded_at, now) : "";
    return date ? `${text} on ${date}` : text;
  }

  function readings(evidence, wording, now) {
    return (evidence || []).map((item) => reading(item, wording, now)).filter(Boolean).join(" · ");
  }

  // Who the prompt is for: the label the clinical system sent, else the person's id.
  function personLabel(person) {
    if (person && person.display) return person.display;
    return `Person ${(person && person.id) || "not named"}`;
  }

  function personFacts(person, wording) {
    const bits = [];
    if (person && person.age !== null && person.age !== undefined) bits.push(`${person.age} years`);
    if (person && person.sex) bits.push(named(wording.sexes, person.sex));
    if (person && person.display && person.id) bits.push(`ID ${person.id}`);
    return bits.join(" · ");
  }

  function place(contact, wording) {
    const setting = named(wording.settings, contact.setting);
    const type = contact.contact_type ? (wording.contact_types || {})[contact.contact_type] : null;
    return type ? `${setting}, ${type}` : setting;
  }

  window.MeccScreenText = {
    isWebUrl, link, renderMarkdown, words, named, shortDate, clock, ago, contactTime,
    reading, readings, personLabel, personFacts, place,
  };
})();
