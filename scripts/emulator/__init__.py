"""Local OpenAI + Anthropic provider emulator, over real HTTP.

Why it exists: the gateway must run (``scripts/serve``), be tested and be benchmarked on a machine with no
internet and no provider keys. The emulator speaks both wire formats closely enough that the official SDKs
parse its output, validates requests like the real APIs (so gateway translation bugs show up as 400s), and
injects faults (status codes, garbage, slow answers, dripping or cut streams, hangs) on demand.

Deterministic behaviour, so tests can assert on translation:

* answer text = ``"Echo: " + text of the last user message`` (text parts joined with a space); when the
  last message is a tool result (OpenAI trailing ``role: tool`` messages, Anthropic ``tool_result`` blocks)
  it is ``"Tool said: " + their text`` (joined with a space).
* input tokens = whitespace-separated words over all system / message text (text parts and tool results;
  images, tool-call arguments and tool definitions are not counted); output tokens = words of the answer
  (for a tool call: 1 + number of arguments).
* a stop sequence found in the answer cuts the text just before it (``stop`` / ``stop_sequence``);
  ``max_tokens`` smaller than the word count keeps that many words (``length`` / ``max_tokens``).
* when tools are given, tool_choice is not ``none`` and the last message is user text, the answer is one
  call of the first (or forced) tool whose required properties are filled by type: string ``"test"``,
  number/integer ``1``, boolean ``true``, array ``[]``, object ``{}``.

Azure OpenAI (``azure``): its deployment and v1 URLs, ``api-version``, ``api-key`` and the content filter on
the trigger words ``FILTERME_PROMPT`` (a 400) and ``FILTERME_OUTPUT`` (``finish_reason: content_filter``).

Modules: ``server`` (HTTP server, routing, :class:`Emulator`), ``faults`` (:class:`Fault`), ``openai`` and
``anthropic`` (one per API: validation table, answer, JSON and streamed replies), ``validation`` (the
table-driven checker they share), ``answers`` (the provider-neutral answer), ``recording``, ``wire``.

Run ``python scripts/emulator --help`` (or ``python -m emulator`` from scripts/) for the CLI.
"""

from .faults import Fault
from .recording import RecordedRequest
from .server import DEFAULT_MODELS, Emulator

__all__ = ["DEFAULT_MODELS", "Emulator", "Fault", "RecordedRequest"]
