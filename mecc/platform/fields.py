"""Strict field types: JSON has types, and a health API should not guess."""

from __future__ import annotations

import difflib
from typing import Any

import marshmallow as ma
from marshmallow import ValidationError, fields, validate

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
    """Unknown fields are an error everywhere: a typo must not be silently dropped."""

    class Meta:
        unknown = ma.RAISE
        ordered = True
