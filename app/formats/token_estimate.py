"""An honest estimate of a request's input tokens, for models whose provider cannot count them for us.

``POST /v1/messages/count_tokens`` is relayed to Anthropic-format providers,
which count exactly. OpenAI-format providers have no such endpoint for Chat
Completions, and no tokenizer is a dependency of the gateway (tiktoken
downloads its encodings at run time, which fails offline, and would still
miss the per-message framing, tools and images of each model). So the count
is estimated here and the answer says so (``x-llm-edge-token-count:
estimate``). The method, also in docs/api.md:

* text: UTF-8 bytes / 4, rounded up, over the system prompt, every text
  block, tool result text, a tool call's name and JSON arguments, and each
  tool definition's name, description and JSON schema. For English text and
  code a token is about four characters; scripts whose characters take more
  bytes (Cyrillic, CJK) also take more tokens per character, so counting
  bytes rather than characters keeps them from being underestimated;
* framing: ``MESSAGE_TOKENS`` per message (and per system prompt),
  ``TOOL_TOKENS`` per tool definition, ``REQUEST_TOKENS`` once;
* images: ``IMAGE_TOKENS`` each, whatever their size (their base64 data is
  never counted as text).

The estimate is never 0: a request has at least one message.
"""

from __future__ import annotations

from app.formats.canonical import Block, ChatRequest, ImageBlock, TextBlock, ToolResultBlock, ToolUseBlock
from app.formats.common import dumps

BYTES_PER_TOKEN = 4
MESSAGE_TOKENS = 4  # role and turn delimiters around each message
TOOL_TOKENS = 8  # the framing of one tool definition
REQUEST_TOKENS = 3  # the start of the answer the model is primed with
# A 1024x1024 image at OpenAI's high detail (170 per 512-pixel tile, 85 base). Larger images cost more,
# smaller ones less; an estimate that errs high makes a client compact a little early, never too late.
IMAGE_TOKENS = 765


def estimate_input_tokens(req: ChatRequest) -> int:
    """Estimated input tokens of ``req`` (see the module docstring for the method)."""
    size = sum(_text(block.text) for block in req.system)
    images = 0
    for message in req.messages:
        for block in message.content:
            block_size, block_images = _block(block)
            size += block_size
            images += block_images
    for tool in req.tools:
        size += _text(tool.name) + _text(tool.description or "") + _text(dumps(tool.parameters))
    framing = MESSAGE_TOKENS * (len(req.messages) + (1 if req.system else 0)) + TOOL_TOKENS * len(req.tools)
    return -(-size // BYTES_PER_TOKEN) + framing + IMAGE_TOKENS * images + REQUEST_TOKENS


def _text(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _block(block: Block) -> tuple[int, int]:
    """(text bytes, images) of one content block."""
    if isinstance(block, TextBlock):
        return _text(block.text), 0
    if isinstance(block, ImageBlock):
        return 0, 1
    if isinstance(block, ToolUseBlock):
        return _text(block.name) + _text(dumps(block.input)), 0
    if isinstance(block, ToolResultBlock):
        size = images = 0
        for part in block.content:
            part_size, part_images = _block(part)
            size += part_size
            images += part_images
        return size, images
    return 0, 0
