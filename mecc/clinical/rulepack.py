"""Rule packs: rules as administrators write them (YAML files, API bodies) <-> RuleDef.

Pure domain code. `parse_rule` validates one rule strictly and names every bad field by its
dotted path, so the same errors serve `mecc rules validate`, the rule editor and the HTTP API.
The prompt templates (checking and rendering) are in `templates`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from mecc.clinical.catalogue import Catalogue
from mecc.clinical.directory import SERVICE_TYPES
from mecc.clinical.domain import INDICATORS, KINDS, RULE_STATUSES, RuleDef, Source
from mecc.clinical.templates import SUMMARY_MAX_CHARS, check_template, widest_facts
from mecc.clinical.yaml_documents import load_entries, parse_entries
from mecc.language.expression import check_expression

MAX_DAYS = 3650
_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_TOPIC = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ODS = re.compile(r"^[A-Z0-9]{3,10}$")
_RULE_FIELDS = (
    "key", "version", "title", "topic", "kind", "status", "priority", "cooldown_days",
    "decline_days", "settings", "staff_roles", "organisations", "when", "prompt", "suggestions",
    "sources", "updated_by", "updated_at",
)
_PROMPT_FIELDS = ("summary", "detail", "indicator")
_SOURCE_FIELDS = ("label", "url")
_PACK_FIELDS = ("rules", "description")


class RulePackError(ValueError):
    """A rule or rule pack is invalid.

    `errors` is a list of `{"path": "rules.3.when", "message": ..., "line"?, "column"?,
    "hint"?, "file"?}`; `source` names the file when the rule came from one.
    """

    def __init__(self, errors: Sequence[Mapping[str, Any]], *, source: str | None = None):
        self.source = source
        self.errors = [{**e, "file": source} if source else dict(e) for e in errors]
        super().__init__("\n".join(_describe(e) for e in self.errors))


def _describe(error: Mapping[str, Any]) -> str:
    where = error.get("path") or "(document)"
    text = f"{where}: {error['message']}"
    if error.get("line") is not None:
        text += f" (line {error['line']}, column {error.get('column') or 1})"
    return f"{error['file']}: {text}" if error.get("file") else text


def _join(prefix: str, name: str | int) -> str:
    prefix = prefix.rstrip(".")
    return f"{prefix}.{name}" if prefix else str(name)


# ---------------------------------------------------------------------------------------------
# Parsing one rule


class _Fields:
    """Reads typed fields of one mapping, collecting an error per bad field."""

    def __init__(self, mapping: Mapping[str, Any], prefix: str, errors: list[dict[str, Any]]):
        self.mapping, self.prefix, self.errors = mapping, prefix, errors

    def path(self, name: str | int) -> str:
        return _join(self.prefix, name)

    def fail(self, name: str | int, message: str, **extra: Any) -> None:
        self.errors.append({"path": self.path(name), "message": message, **extra})

    def reject_unknown(self, allowed: Sequence[str]) -> None:
        for name in self.mapping:
            if name not in allowed:
                close = difflib.get_close_matches(str(name), allowed, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                self.fail(str(name), f"Unknown field.{hint}")

    def text(self, name: str, *, required: bool, default: str = "", limit: int = 200) -> str:
        value = self.mapping.get(name)
        if value is None:
            if required:
                self.fail(name, "Missing required field.")
            return default
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(name, "Must be a non-empty string." if required else "Must be a string.")
            return default
        if len(value) > limit:
            self.fail(name, f"Must be at most {limit} characters.")
        return value

    def integer(self, name: str, low: int, high: int, *, default: int | None) -> int:
        value = self.mapping.get(name)
        if value is None:
            if default is None:
                self.fail(name, "Missing required field.")
                return low
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(name, f"Must be a whole number from {low} to {high}.")
            return low
        return value

    def choice(self, name: str, allowed: Sequence[str], *, default: str | None) -> str:
        value = self.mapping.get(name, default)
        if value not in allowed:
            if value is None:
                self.fail(name, "Missing required field.")
            else:
                close = difflib.get_close_matches(str(value), allowed, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                self.fail(name, f"Must be one of: {', '.join(allowed)}.{hint}")
            return allowed[0]
        return str(value)

    def members(self, name: str, allowed: Sequence[str], what: str) -> list[str]:
        value = self.mapping.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(name, f"Must be a list of {what}.")
            return []
        chosen: list[str] = []
        for i, item in enumerate(value):
            if item not in allowed:
                close = difflib.get_close_matches(str(item), allowed, n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                self.fail(f"{name}.{i}", f"'{item}' is not one of the {what}.{hint}")
            elif item in chosen:
                self.fail(f"{name}.{i}", f"'{item}' is listed twice.")
            else:
                chosen.append(item)
        return chosen


def _fact_values(catalogue: Catalogue, fact: str) -> tuple[str, ...]:
    spec = catalogue.facts.get(fact)
    return spec.values if spec is not None and spec.values else ()


def _is_web_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. "http://[" (an unclosed IPv6 address)
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _timestamp(fields: _Fields) -> datetime | None:
    value = fields.mapping.get("updated_at")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            fields.fail("updated_at", "Must be an ISO 8601 date-time with a zone offset.")
            return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        fields.fail("updated_at", "Must be an ISO 8601 date-time with a zone offset.")
        return None
    return value.astimezone(UTC)


def _prompt(fields: _Fields, catalogue: Catalogue) -> tuple[str, str, str]:
    raw = fields.mapping.get("prompt")
    if not isinstance(raw, Mapping):
        fields.fail("prompt", "Missing required field: a mapping with summary, detail and "
                              "indicator." if raw is None else "Must be a mapping.")
        return "", "", "info"
    prompt = _Fields(raw, fields.path("prompt"), fields.errors)
    prompt.reject_unknown(_PROMPT_FIELDS)
    summary = prompt.text("summary", required=True, limit=1000)
    detail = prompt.text("detail", required=False, limit=20_000)
    indicator = prompt.choice("indicator", INDICATORS, default="info")
    if summary.strip():
        checked = len(fields.errors)
        template = check_template(summary, prompt.path("summary"), catalogue, fields.errors)
        if template is not None and len(fields.errors) == checked:
            rendered = " ".join(template.render(widest_facts(catalogue)).split())
            if len(rendered) > SUMMARY_MAX_CHARS:
                prompt.fail("summary", f"Must be at most {SUMMARY_MAX_CHARS} characters when "
                                       f"rendered; it can reach {len(rendered)}.")
            elif not " ".join(template.render({}).split()):
                prompt.fail("summary", "Renders empty when facts are unknown.")
    if detail:
        check_template(detail, prompt.path("detail"), catalogue, fields.errors)
    return summary, detail, indicator


def _sources(fields: _Fields) -> list[Source]:
    raw = fields.mapping.get("sources")
    if raw is None:
        return []
    if not isinstance(raw, list):
        fields.fail("sources", "Must be a list of {label, url}.")
        return []
    sources = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            fields.fail(f"sources.{i}", "Must be a mapping with label and url.")
            continue
        source = _Fields(item, fields.path(f"sources.{i}"), fields.errors)
        source.reject_unknown(_SOURCE_FIELDS)
        label = source.text("label", required=True)
        url = item.get("url")
        if url is not None and not _is_web_url(url):
            source.fail("url", "Must be an http(s) URL.")
        sources.append(Source(label=label, url=url))
    return sources


def _organisations(fields: _Fields) -> list[str]:
    """ODS codes (upper-case); none: the rule applies to every organisation's events."""
    raw = fields.mapping.get("organisations")
    if raw is None:
        return []
    if not isinstance(raw, list):
        fields.fail("organisations", "Must be a list of ODS codes (empty: every organisation).")
        return []
    codes: list[str] = []
    for i, item in enumerate(raw):
        code = item.strip().upper() if isinstance(item, str) else None
        if code is None or not _ODS.match(code):
            fields.fail(f"organisations.{i}", f"'{item}' is not an ODS code.")
        elif code in codes:
            fields.fail(f"organisations.{i}", f"'{code}' is listed twice.")
        else:
            codes.append(code)
    return codes


def _when(fields: _Fields, catalogue: Catalogue) -> str:
    when = fields.text("when", required=True, limit=4000)
    if when.strip():
        for diag in check_expression(when, catalogue):
            extra: dict[str, Any] = {"line": diag.line, "column": diag.column}
            if diag.hint:
                extra["hint"] = diag.hint
            fields.fail("when", diag.message, **extra)
    return when


def parse_rule(mapping: Any, catalogue: Catalogue, *, path_prefix: str = "") -> RuleDef:
    """Validate one rule (a YAML entry or an API body) and build its RuleDef.

    Raises RulePackError listing every problem, each named by dotted path under `path_prefix`
    (`prompt.summary`, `sources.0.url`, or `rules.3.when` with the prefix `rules.3`).
    """
    if not isinstance(mapping, Mapping):
        raise RulePackError([{"path": path_prefix.rstrip("."), "message": "Must be a mapping."}])
    errors: list[dict[str, Any]] = []
    fields = _Fields(mapping, path_prefix, errors)
    fields.reject_unknown(_RULE_FIELDS)

    key = fields.text("key", required=True, limit=63)
    if key and not _KEY.match(key):
        fields.fail("key", "Must be a slug: lower-case letters, digits and hyphens (2-63).")
    version = fields.integer("version", 1, 1_000_000, default=1)
    title = fields.text("title", required=True)
    topic = fields.text("topic", required=True, limit=63)
    if topic and not _TOPIC.match(topic):
        fields.fail("topic", "Must be a slug: lower-case letters, digits and underscores.")
    kind = fields.choice("kind", KINDS, default=None)
    status = fields.choice("status", RULE_STATUSES, default="draft")
    priority = fields.integer("priority", 1, 100, default=None)
    cooldown_days = fields.integer("cooldown_days", 0, MAX_DAYS, default=180)
    decline_days = fields.integer("decline_days", 0, MAX_DAYS, default=180)
    settings = fields.members("settings", _fact_values(catalogue, "setting"), "settings")
    staff_roles = fields.members("staff_roles", _fact_values(catalogue, "staff_role"),
                                 "staff roles")
    organisations = _organisations(fields)
    when = _when(fields, catalogue)
    summary, detail, indicator = _prompt(fields, catalogue)
    suggestions = fields.members("suggestions", SERVICE_TYPES, "service types")
    sources = _sources(fields)
    updated_by = fields.mapping.get("updated_by")
    if updated_by is not None and not isinstance(updated_by, str):
        fields.fail("updated_by", "Must be a string.")
    updated_at = _timestamp(fields)

    if errors:
        raise RulePackError(errors)
    return RuleDef(
        key=key, version=version, title=title, topic=topic, kind=kind, when=when,
        priority=priority, summary=summary, detail=detail, indicator=indicator,
        settings=frozenset(settings), staff_roles=frozenset(staff_roles),
        organisations=frozenset(organisations), cooldown_days=cooldown_days,
        decline_days=decline_days,
        suggestions=tuple(suggestions), sources=tuple(sources), status=status,
        updated_by=updated_by, updated_at=updated_at,
    )


# ---------------------------------------------------------------------------------------------
# Packs


def parse_rule_pack(data: Any, catalogue: Catalogue, *, source: str | None = None,
                    ) -> list[RuleDef]:
    """Validate a whole rule-pack document (`{rules: [...]}`); rule keys must be unique."""
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        raise RulePackError([{"path": "", "message": "Expected a mapping with a 'rules' list."}],
                            source=source)
    errors: list[dict[str, Any]] = [
        {"path": str(name), "message": "Unknown field."}
        for name in data if name not in _PACK_FIELDS
    ]
    rules = parse_entries(data["rules"], lambda raw, at: parse_rule(raw, catalogue, path_prefix=at),
                          RulePackError, list_name="rules", key="key", errors=errors)
    if errors:
        raise RulePackError(errors, source=source)
    return rules


def load_rule_pack(path: str | Path, catalogue: Catalogue) -> list[RuleDef]:
    """Load and validate a rule-pack YAML file, or every *.yaml file of a directory."""
    return load_entries(path, lambda data, file: parse_rule_pack(data, catalogue, source=file),
                        RulePackError, list_name="rules", key="key", positions=True)


# ---------------------------------------------------------------------------------------------
# Writing


def rule_to_dict(rule: RuleDef) -> dict[str, Any]:
    """The YAML/JSON shape of a rule, in a stable key order; `parse_rule` reads it back."""
    data: dict[str, Any] = {
        "key": rule.key,
        "version": rule.version,
        "title": rule.title,
        "topic": rule.topic,
        "kind": rule.kind,
        "status": rule.status,
        "priority": rule.priority,
        "cooldown_days": rule.cooldown_days,
        "decline_days": rule.decline_days,
        "settings": sorted(rule.settings),
        "staff_roles": sorted(rule.staff_roles),
        "organisations": sorted(rule.organisations),
        "when": rule.when,
        "prompt": {"summary": rule.summary, "detail": rule.detail, "indicator": rule.indicator},
        "suggestions": list(rule.suggestions),
        "sources": [
            {"label": s.label, "url": s.url} if s.url is not None else {"label": s.label}
            for s in rule.sources
        ],
    }
    if rule.updated_by is not None:
        data["updated_by"] = rule.updated_by
    if rule.updated_at is not None:
        data["updated_at"] = rule.updated_at.isoformat()
    return data


class _PackDumper(yaml.SafeDumper):
    """Block scalars for multi-line text, flow style for short lists of scalars."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    flow = all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_PackDumper.add_representer(str, _represent_str)
_PackDumper.add_representer(list, _represent_list)


def dump_rule_pack(rules: Iterable[RuleDef]) -> str:
    """A rule-pack YAML document for these rules, readable and stable (what `load` reads)."""
    body = yaml.dump(
        {"rules": [rule_to_dict(r) for r in rules]}, Dumper=_PackDumper,
        sort_keys=False, allow_unicode=True, width=100, default_flow_style=False,
    )
    # A blank line between rules; top-level list items are the only lines starting "- key:".
    return body.replace("\n- key: ", "\n\n- key: ")
