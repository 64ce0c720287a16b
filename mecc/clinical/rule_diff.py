"""What differs between two versions of a rule, field by field.

Pure domain code. Shown before a version is published or approved (the live version against the
chosen one), in the editor's version history, and by `mecc rules load` when a file changes a
rule that is installed. Both sides go through `rule_to_dict`, so a stored body written before a
field existed compares equal to the same rule with that field at its default.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mecc.clinical.domain import RuleDef
from mecc.clinical.rulepack import rule_to_dict

# (path in the rule body, what a person calls it), in the order a reviewer reads a rule.
FIELDS: tuple[tuple[str, str], ...] = (
    ("title", "Title"),
    ("topic", "Topic"),
    ("kind", "Kind"),
    ("when", "When (expression)"),
    ("priority", "Priority"),
    ("prompt.summary", "Summary"),
    ("prompt.detail", "Detail"),
    ("prompt.indicator", "Indicator"),
    ("settings", "Settings"),
    ("staff_roles", "Staff roles"),
    ("organisations", "Organisations"),
    ("cooldown_days", "Cooldown days"),
    ("decline_days", "Decline days"),
    ("suggestions", "Suggested services"),
    ("sources", "Sources"),
)


@dataclass(frozen=True)
class Change:
    """One field that differs. `lines` is a line diff for multi-line text, else empty."""

    field: str
    label: str
    before: Any
    after: Any
    lines: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"field": self.field, "label": self.label,
                                "before": self.before, "after": self.after}
        if self.lines:
            data["lines"] = [{"op": op, "text": text} for op, text in self.lines]
        return data


def _get(body: Mapping[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _line_diff(before: str, after: str) -> tuple[tuple[str, str], ...]:
    """Each line as kept (" "), removed ("-") or added ("+")."""
    old, new = before.splitlines(), after.splitlines()
    out: list[tuple[str, str]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new,
                                                       autojunk=False).get_opcodes():
        if tag == "equal":
            out.extend((" ", line) for line in old[i1:i2])
            continue
        out.extend(("-", line) for line in old[i1:i2])
        out.extend(("+", line) for line in new[j1:j2])
    return tuple(out)


def diff_rules(before: RuleDef | None, after: RuleDef) -> list[Change]:
    """The fields of `after` that differ from `before` (None: nothing live, every field new)."""
    return diff_bodies(rule_to_dict(before) if before is not None else None, rule_to_dict(after))


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def diff_bodies(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[Change]:
    """The same for rule bodies as stored or written (`rule_to_dict` shape). A field a stored
    body lacks equals an empty one: no `organisations` and `organisations: []` both mean every
    organisation."""
    changes = []
    for path, label in FIELDS:
        was, now = _get(before or {}, path), _get(after, path)
        if was == now or (_blank(was) and _blank(now)):
            continue
        multiline = isinstance(now, str) and ("\n" in now or "\n" in (was or ""))
        lines = _line_diff(was or "", now) if multiline and isinstance(was, str | None) else ()
        changes.append(Change(path, label, was, now, lines))
    return changes


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        if value and isinstance(value[0], Mapping):  # sources
            return "; ".join(" | ".join(str(v) for v in item.values()) for item in value)
        return ", ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def format_changes(changes: list[Change], *, indent: str = "  ") -> str:
    """A plain-text diff for a terminal: one block per changed field."""
    out: list[str] = []
    for change in changes:
        out.append(f"{indent}{change.label} ({change.field}):")
        if change.lines:
            out.extend(f"{indent}  {op} {text}" for op, text in change.lines)
        else:
            out.append(f"{indent}  - {_show(change.before)}")
            out.append(f"{indent}  + {_show(change.after)}")
    return "\n".join(out)
