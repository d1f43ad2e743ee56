"""Table-driven request validation: each field's rule is a row, each API words the failures its own way.

A :class:`Rule` declares what one field of a JSON object must be: present, of a JSON type, within
bounds, one of some values, matching a pattern, only given together with another field. :func:`check`
runs a table of rules over an object in order and raises the first failure through a :class:`Dialect`,
which renders it as the real API would (OpenAI: ``Invalid type for 'x' ...``; Anthropic:
``x: Input should be ...``). A rule's ``then`` checks what a row cannot say (nested structure, rules
between several fields) once the row itself has passed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .wire import ApiError


def tname(value: Any) -> str:
    """JSON type name, for error messages that read like the real APIs'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


# The JSON types a rule's ``kind`` can name.
KINDS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": is_int,
    "number": is_num,
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "strings": _strings,  # an array of strings
    "string_or_strings": lambda v: isinstance(v, str) or _strings(v),
    "string_or_object": lambda v: isinstance(v, (str, dict)),
    "string_or_array": lambda v: isinstance(v, (str, list)),
}


@dataclass(frozen=True, eq=False)
class Rule:
    """What one field must be. A null value counts as absent unless ``null_is_value``."""

    field: str
    kind: str | None = None  # a key of KINDS
    required: bool = False
    min_items: int | None = None  # strings and arrays: at least this many characters / items
    max_items: int | None = None  # arrays: at most this many items
    low: float | None = None
    high: float | None = None
    allowed: tuple[Any, ...] | None = None
    pattern: re.Pattern[str] | None = None
    needs: str | None = None  # a sibling field that must be truthy for this one to be given
    null_is_value: bool = False  # only a missing key is absent; a null is checked like any value
    report_as: str | None = None  # the reason every failure is reported as (the real API's quirk)
    wording: Mapping[str, str] = field(default_factory=dict)  # reason (or "*") -> template: {path}, {value}
    code: str | None = None  # the OpenAI error code of a worded failure
    then: Callable[[Any, dict[str, Any], str], None] | None = None  # (value, the object, path), once passed


# The checks of a present value, in the order they run; the first that fails names the reason.
TESTS: tuple[tuple[str, Callable[[Rule, Any, dict[str, Any]], bool]], ...] = (
    ("needs", lambda r, v, obj: r.needs is not None and not obj.get(r.needs)),
    ("type", lambda r, v, obj: r.kind is not None and not KINDS[r.kind](v)),
    ("too_few", lambda r, v, obj: r.min_items is not None and len(v) < r.min_items),
    ("too_many", lambda r, v, obj: r.max_items is not None and isinstance(v, list) and len(v) > r.max_items),
    ("below", lambda r, v, obj: r.low is not None and v < r.low),
    ("above", lambda r, v, obj: r.high is not None and v > r.high),
    ("not_allowed", lambda r, v, obj: r.allowed is not None and v not in r.allowed),
    ("pattern", lambda r, v, obj: r.pattern is not None and not r.pattern.match(v)),
)
REASONS = ("missing", *(reason for reason, _ in TESTS))


def _absent(rule: Rule, obj: dict[str, Any]) -> bool:
    return rule.field not in obj if rule.null_is_value else obj.get(rule.field) is None


def violation(rule: Rule, obj: dict[str, Any]) -> str | None:
    """The reason ``obj`` breaks ``rule``, or None."""
    if _absent(rule, obj):
        return "missing" if rule.required else None
    value = obj[rule.field]
    return next((reason for reason, fails in TESTS if fails(rule, value, obj)), None)


class Dialect:
    """How one API words each reason; subclasses fill ``reasons`` and :meth:`worded`."""

    reasons: dict[str, Callable[[Rule, str, Any], ApiError]] = {}

    def worded(self, message: str, rule: Rule, path: str) -> ApiError:
        raise NotImplementedError

    def unknown(self, name: str) -> ApiError:
        raise NotImplementedError

    def error(self, reason: str, rule: Rule, path: str, value: Any) -> ApiError:
        reason = rule.report_as or reason
        template = rule.wording.get(reason, rule.wording.get("*"))
        if template is not None:
            return self.worded(template.format(path=path, value=value), rule, path)
        return self.reasons[reason](rule, path, value)


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def check(obj: dict[str, Any], rules: Sequence[Rule], dialect: Dialect, prefix: str = "") -> None:
    """Check ``obj`` against ``rules`` in order; raise the first failure in ``dialect``'s words."""
    for rule in rules:
        path = join(prefix, rule.field)
        reason = violation(rule, obj)
        if reason is not None:
            raise dialect.error(reason, rule, path, obj.get(rule.field))
        if rule.then is not None and not _absent(rule, obj):
            rule.then(obj[rule.field], obj, path)


def check_value(rule: Rule, value: Any, path: str, dialect: Dialect) -> None:
    """Check one value that is not a field of an object (an array's item) against ``rule``."""
    reason = violation(rule, {rule.field: value})
    if reason is not None:
        raise dialect.error(reason, rule, path, value)


def check_unknown(body: dict[str, Any], known: frozenset[str], dialect: Dialect) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise dialect.unknown(unknown[0])


def nested(rules: Sequence[Rule], dialect: Dialect) -> Callable[[Any, dict[str, Any], str], None]:
    """A ``then`` that checks a field's object value against its own table."""
    return lambda value, obj, path: check(value, rules, dialect, path)


def check_items(items: list[Any], item: Rule, rules: Sequence[Rule], dialect: Dialect, path: str) -> None:
    """Check each item of an array against ``item`` (its type), then its fields against ``rules``.

    ``path`` formats an item's index: ``"tools[{}]"`` (OpenAI) or ``"tools.{}"`` (Anthropic).
    """
    for k, value in enumerate(items):
        check_value(item, value, path.format(k), dialect)
        check(value, rules, dialect, path.format(k))
