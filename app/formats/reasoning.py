"""How much a model may reason, said in either dialect: OpenAI's ``reasoning_effort`` and Anthropic's ``thinking``.

Both tables are documented in docs/api.md ("Reasoning"); change them together.

OpenAI ``reasoning_effort`` to a Claude model becomes ``thinking: {"type": "enabled", "budget_tokens": N}``
(``none`` sends no ``thinking``). Anthropic requires ``1024 <= budget_tokens < max_tokens``
(https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking): when the caller's
``max_tokens`` is not above the budget, ``max_tokens`` becomes budget + the caller's limit, so the
answer keeps the room the caller gave it and the budget is the reasoning on top.

Anthropic ``output_config.effort`` (https://docs.claude.com/en/docs/build-with-claude/effort) to an OpenAI
reasoning model is ``reasoning_effort`` word for word (``low``, ``medium``, ``high``, ``xhigh``), ``max``
becoming ``xhigh``, OpenAI's highest; it wins over an effort read from a thinking budget: it is the
caller's own word for how hard to work.

Anthropic ``thinking`` to an OpenAI reasoning model becomes ``reasoning_effort`` by budget range
(``low`` below 4096, ``medium`` below 12288, ``high`` from there; ``minimal`` is never chosen,
the o-series does not take it). ``adaptive`` thinking sends no ``reasoning_effort``: the model's
own default, which is what adaptive means. ``disabled`` sends nothing.
"""

from __future__ import annotations

import re
from typing import Any

from app.errors import InvalidRequest

# reasoning_effort -> thinking.budget_tokens (OpenAI's values: "none" ... "max").
EFFORT_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 24576,
    "max": 32000,
}
EFFORTS = ("none", *EFFORT_BUDGETS)
# thinking.budget_tokens ranges -> reasoning_effort: (exclusive upper bound, effort), in order.
BUDGET_EFFORTS: tuple[tuple[float, str], ...] = ((4096, "low"), (12288, "medium"), (float("inf"), "high"))

# OpenAI models that reason (and take reasoning_effort): the o-series and gpt-5, with or without a provider prefix.
_REASONING_MODEL = re.compile(r"(?:.*/)?(?:o\d|gpt-5)(?!-chat)")


def is_reasoning_model(model: str) -> bool:
    return _REASONING_MODEL.match(model) is not None


def effort_for_budget(budget: int) -> str:
    for bound, effort in BUDGET_EFFORTS:
        if budget < bound:
            return effort
    return BUDGET_EFFORTS[-1][1]


def thinking_to_effort(thinking: Any, upstream_model: str) -> str | None:
    """Anthropic ``thinking`` as the ``reasoning_effort`` for an OpenAI-format model (``None``: send none).

    To a model that does not reason, enabled or adaptive thinking is a 400 naming ``thinking``:
    the answer would silently come without the reasoning the caller asked for.
    """
    if not isinstance(thinking, dict):
        raise InvalidRequest("Invalid value for 'thinking': expected an object", param="thinking")
    kind = thinking.get("type")
    if kind == "disabled":
        return None
    if kind not in ("enabled", "adaptive"):
        raise InvalidRequest("Invalid value for 'thinking.type': expected 'enabled', 'adaptive' or 'disabled'",
                             param="thinking.type")
    if not is_reasoning_model(upstream_model):
        raise InvalidRequest(
            "'thinking' is not supported when the model is served by an OpenAI-format provider and is not a "
            "reasoning model (o-series, gpt-5); remove it or choose a reasoning model", param="thinking")
    if kind == "adaptive":
        return None
    budget = thinking.get("budget_tokens")
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise InvalidRequest("Missing required parameter: 'thinking.budget_tokens'", param="thinking.budget_tokens")
    return effort_for_budget(budget)


def effort_to_thinking(effort: Any, max_tokens: int) -> tuple[dict[str, Any] | None, int]:
    """OpenAI ``reasoning_effort`` as Anthropic ``thinking`` and the ``max_tokens`` to send with it."""
    if effort not in EFFORTS:
        raise InvalidRequest(f"Invalid value for 'reasoning_effort': expected one of {', '.join(EFFORTS)}",
                             param="reasoning_effort")
    if effort == "none":
        return None, max_tokens
    budget = EFFORT_BUDGETS[effort]
    if max_tokens <= budget:
        max_tokens = budget + max_tokens
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def billable_max_tokens(effort: Any, max_tokens: int) -> int:
    """The ``max_tokens`` a Claude model is sent for an OpenAI caller's ``reasoning_effort`` and limit: thinking
    is billed as output within it, so it is what a budget must hold for (``max_tokens`` for no or a bad effort,
    which sends no thinking or is refused before an attempt)."""
    if effort not in EFFORTS:
        return max_tokens
    return effort_to_thinking(effort, max_tokens)[1]


# Anthropic output_config.effort -> OpenAI reasoning_effort.
OUTPUT_EFFORTS: dict[str, str] = {"low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh", "max": "xhigh"}


def output_config_effort(config: Any, upstream_model: str) -> str | None:
    """Anthropic ``output_config`` as the ``reasoning_effort`` for an OpenAI-format model (``None``: no effort).

    Only ``effort`` has an OpenAI counterpart: any other key is a 400 naming it, and so is an effort for a
    model that does not reason (the answer would silently come without it).
    """
    if not isinstance(config, dict):
        raise InvalidRequest("Invalid value for 'output_config': expected an object", param="output_config")
    for key in config:
        if key != "effort":
            raise InvalidRequest(f"'output_config.{key}' is not supported when the model is served by an "
                                 "OpenAI-format provider; remove it or choose another model",
                                 param=f"output_config.{key}")
    effort = config.get("effort")
    if effort is None:
        return None
    if effort not in OUTPUT_EFFORTS:
        raise InvalidRequest(f"Invalid value for 'output_config.effort': expected one of {', '.join(OUTPUT_EFFORTS)}",
                             param="output_config.effort")
    if not is_reasoning_model(upstream_model):
        raise InvalidRequest(
            "'output_config.effort' is not supported when the model is served by an OpenAI-format provider and is "
            "not a reasoning model (o-series, gpt-5); remove it or choose a reasoning model",
            param="output_config.effort")
    return OUTPUT_EFFORTS[effort]
