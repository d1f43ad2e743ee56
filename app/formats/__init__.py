"""Codecs between the two wire formats (OpenAI, Anthropic) and the canonical types.

``openai`` and ``anthropic`` expose the same functions and classes, so callers
pick a codec module by format name and never branch on it; ``sse`` is the
byte-level Server-Sent Events layer both share, ``stream`` the format-free
helpers that assemble or replay canonical streams.
"""
