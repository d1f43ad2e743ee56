"""Every row of the emulator's validation tables, broken one rule at a time, gets the real API's error.

Why: the emulator's request validation is a table of rules per API (scripts/emulator/openai.py and
anthropic.py, checked by scripts/emulator/validation.py). A row nobody sends a bad value for could say
anything; here each constraint of each row (required, type, length, bounds, allowed values, pattern, a
field it needs) gets a body that breaks only it, and the answer must be a 400 in the API's own error
shape, about that field, worded as that API words that failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.emulator_support import AN, OA, an_body, an_tool, call, cleared, em, oa_body, oa_tool, serving

pytestmark = pytest.mark.timeout(30)

emu_server = pytest.fixture(scope="module")(serving)
emu = pytest.fixture(cleared)

ABSENT = object()
KINDS = em.validation.KINDS
# Valid values of the fields other rows need (``needs``), and of those rows themselves for the ``needs`` case.
VALID = {
    "openai": {"stream": True, "tools": [oa_tool()], "tool_choice": "auto", "stream_options": {}},
    "anthropic": {"stream": True, "tools": [an_tool()]},
}
VALID_ANY = VALID["openai"] | VALID["anthropic"]
ENDPOINTS = {  # API, path, headers, the table, a valid body
    "chat": ("openai", "/v1/chat/completions", OA, em.openai.RULES, oa_body),
    "messages": ("anthropic", "/v1/messages", AN, em.anthropic.RULES, an_body),
    "count_tokens": (
        "anthropic",
        "/v1/messages/count_tokens",
        AN,
        em.anthropic.COUNT_RULES,
        lambda: {k: v for k, v in an_body().items() if k != "max_tokens"},
    ),
}


def wrong_type(kind: str) -> Any:
    return next(v for v in ("x", 7, 1.5, True, ["x"], {}) if not KINDS[kind](v))


def broken_values(rule: Any, valid: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(reason, a value of the field that fails only that part of ``rule``) for each constraint it has."""
    if rule.required:
        yield "missing", ABSENT
    if rule.kind is not None:
        yield "type", wrong_type(rule.kind)
    if rule.min_items is not None:
        yield "too_few", "" if rule.kind == "string" else []
    if rule.max_items is not None:
        yield "too_many", ["s"] * (rule.max_items + 1)
    if rule.low is not None:
        yield "below", rule.low - 1
    if rule.high is not None:
        yield "above", rule.high + 1
    if rule.allowed is not None:
        yield "not_allowed", "not-allowed"
    if rule.pattern is not None:
        yield "pattern", "not a name!"
    if rule.needs is not None:
        yield "needs", valid[rule.field]


def cases() -> Iterator[Any]:
    for endpoint, (api, _, _, rules, _) in ENDPOINTS.items():
        for rule in rules:
            for reason, value in broken_values(rule, VALID[api]):
                yield pytest.param(endpoint, rule, reason, value, id=f"{endpoint}-{rule.field}-{reason}")


CASES = list(cases())


def test_every_row_with_a_rule_is_broken_by_some_case() -> None:
    for endpoint, (_, _, _, rules, _) in ENDPOINTS.items():
        broken = {p.values[1].field for p in CASES if p.values[0] == endpoint}
        only_checks = {rule.field for rule in rules if not list(broken_values(rule, VALID_ANY))}
        assert {rule.field for rule in rules} == broken | only_checks
        # Rows that only run a check of nested structure, covered by the validation cases of each API's tests:
        assert only_checks <= {"system", "messages", "tool_choice"}, only_checks


@pytest.mark.parametrize(("endpoint", "rule", "reason", "value"), CASES)
def test_each_rule_of_each_row_answers_as_the_real_api(emu: Any, endpoint: str, rule: Any, reason: str,
                                                        value: Any) -> None:
    api, path, headers, _, make_body = ENDPOINTS[endpoint]
    body = make_body()
    if rule.needs is not None and reason != "needs":
        body[rule.needs] = VALID[api][rule.needs]
    if value is ABSENT:
        body.pop(rule.field, None)
    else:
        body[rule.field] = value
    status, _, raw = call(emu, "POST", path, body, headers)
    assert status == 400, raw
    dialect = em.openai.DIALECT if api == "openai" else em.anthropic.DIALECT
    expected = dialect.error(reason, rule, rule.field, None if value is ABSENT else value)
    if api == "openai":
        assert json.loads(raw) == {
            "error": {
                "message": expected.message,
                "type": "invalid_request_error",
                "param": rule.field,
                "code": expected.code,
            }
        }
    else:
        error = {"type": "invalid_request_error", "message": expected.message}
        assert json.loads(raw) == {"type": "error", "error": error}
        assert expected.message.startswith(f"{rule.field}:")
