"""Strict field types: JSON has types, and a health API should not guess.

Also the one set of checks every request value goes through, whatever the endpoint or the
location (body, query, path), so that nothing reaches the database it cannot store and the
answer is a 422 naming the field, never a 500:
- text with NUL characters (PostgreSQL refuses them) or unpaired surrogates (not Unicode: no
  encoder accepts them) -- `text_problem`, and `unsafe_values` over a whole JSON document;
- integers beyond what a column holds: 32 bits for every schema field (`Schema` bounds each
  integer field), 64 bits anywhere in a body (`unsafe_values`);
- JSON bodies read one way everywhere (`loads_strict`): a key repeated in one object is a
  400, and under `json_types_strict` a schema's integer, number and boolean fields take
  only those JSON types (no "1", 1.5 or 1 for true).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import marshmallow as ma
from marshmallow import ValidationError, fields, pre_load, validate

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_UNSAFE_TEXT = re.compile(r"[\x00\ud800-\udfff]")
_strict_json_types: ContextVar[bool] = ContextVar("mecc_strict_json_types", default=False)


def text_problem(value: str) -> str | None:
    """Why this text cannot be stored, or None."""
    found = _UNSAFE_TEXT.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "Must not contain NUL (\\u0000) characters."
    return "Must be valid Unicode text (it contains an unpaired surrogate)."


def _join(path: str, name: object) -> str:
    return f"{path}.{name}" if path else str(name)


def unsafe_values(value: Any, path: str = "", limit: int = 50) -> dict[str, list[str]]:
    """Each text (key or value) that cannot be stored, and each integer beyond 64 bits, in a
    JSON document, by dotted path (at most `limit` of them)."""
    found: dict[str, list[str]] = {}
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack and len(found) < limit:
        where, item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                found[where or "body"] = [problem]
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                found[where or "body"] = ["Out of range: larger than a 64-bit integer."]
        elif isinstance(item, float):
            if not math.isfinite(item):
                found[where or "body"] = ["Must be a number (NaN and Infinity are not JSON)."]
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                problem = text_problem(key) if isinstance(key, str) else None
                if problem:
                    found[_join(where, repr(key)[1:-1])] = [f"Field name: {problem}"]
                    continue
                stack.append((_join(where, key), inner))
        elif isinstance(item, list | tuple):
            stack.extend((_join(where, index), inner) for index, inner in enumerate(item))
    return dict(sorted(found.items()))


class RepeatedKey(ValueError):
    """A JSON object names one key twice (which value was meant is anyone's guess)."""


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise RepeatedKey(f"The key {key!r} appears twice in one JSON object.")
        result[key] = value
    return result


def loads_strict(data: bytes | str) -> Any:
    """A JSON body: ValueError (RepeatedKey, json.JSONDecodeError, UnicodeDecodeError) unless
    each key appears once per object. NaN and Infinity are read, for `unsafe_values` (or a
    number field) to refuse by name."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data  # RFC 8259: UTF-8
    return json.loads(text, object_pairs_hook=_no_repeated_keys)


@contextmanager
def json_types_strict() -> Iterator[None]:
    """Within this block, schemas being loaded read a JSON body: integer, number and boolean
    fields take only those JSON types (a query string, by contrast, is all text)."""
    token = _strict_json_types.set(True)
    try:
        yield
    finally:
        _strict_json_types.reset(token)


def _json_type_problem(field: fields.Field, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(field, fields.Boolean):
        return None if isinstance(value, bool) else "Not a valid boolean (true or false)."
    if isinstance(field, fields.Integer):
        integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        return None if integral and not isinstance(value, bool) else "Not a valid integer."
    if isinstance(field, fields.Number):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return None if numeric else "Not a valid number."
    if isinstance(field, fields.List) and isinstance(value, list):
        for item in value:
            problem = _json_type_problem(field.inner, item)
            if problem:
                return problem
    return None


class _SafeText(validate.Validator):
    def __call__(self, value: Any) -> Any:
        problem = text_problem(value) if isinstance(value, str) else None
        if problem:
            raise ValidationError(problem)
        return value


SAFE_TEXT = _SafeText()
INT32 = validate.Range(min=INT32_MIN, max=INT32_MAX,
                       error="Out of range: must be between {min} and {max}.")


def _bound(field: fields.Field) -> None:
    """Give a field (and the fields inside a list or dict) the shared checks."""
    if isinstance(field, fields.Integer):
        field.validators.append(INT32)
    elif isinstance(field, fields.String):
        field.validators.append(SAFE_TEXT)
    elif isinstance(field, fields.List):
        _bound(field.inner)
    elif isinstance(field, fields.Dict):
        for inner in (field.key_field, field.value_field):
            if inner is not None:
                _bound(inner)

SLUG = validate.Regexp(r"^[a-z][a-z0-9_]{0,63}$", error="Must be a lower-case slug (a-z, 0-9, _).")
# Identifiers chosen by integrators: printable, no spaces or control characters.
IDENT = validate.Regexp(r"^[^\s\x00-\x1f\x7f]+$", error="Must not contain spaces or control "
                        "characters.")


class StrictFloat(fields.Float):
    """A JSON number (int or float), never a string or a bool."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictInteger(fields.Integer):
    """A JSON integer; 6.0 is accepted as 6, 6.5 and "6" are not."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """true or false; not 1, "yes" or "true" (1 == True in Python, so check the type)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictString(fields.String):
    """A string, trimmed; an empty string is refused (leave the field out instead)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        result = super()._deserialize(value, attr, data, **kwargs)
        result = result.strip()
        if result == "":
            raise ValidationError("Must not be empty.")
        return result


def one_of(choices: list[str] | tuple[str, ...]) -> validate.Validator:
    """OneOf with a did-you-mean, because a typo should be a one-second fix."""

    class _OneOf(validate.OneOf):
        def __call__(self, value: Any) -> Any:
            if value in self.choices:
                return value
            close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ValidationError(f"Must be one of: {', '.join(map(str, self.choices))}.{hint}")

    return _OneOf(list(choices))


class Schema(ma.Schema):
    """Unknown fields are an error everywhere: a typo must not be silently dropped. Every
    field gets the shared checks (32-bit integers, storable text), and under
    `json_types_strict` the JSON types of its integer, number and boolean fields."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    def on_bind_field(self, field_name: str, field_obj: fields.Field) -> None:
        _bound(field_obj)

    @pre_load
    def _strict_json_types(self, data: Any, **_: Any) -> Any:
        if not _strict_json_types.get() or not isinstance(data, Mapping):
            return data
        errors: dict[str, list[str]] = {}
        for name, field in self.load_fields.items():
            key = field.data_key or name
            if key in data:
                problem = _json_type_problem(field, data[key])
                if problem:
                    errors[key] = [problem]
        if errors:
            raise ValidationError(errors)
        return data
