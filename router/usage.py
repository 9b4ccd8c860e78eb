"""Token usage of one request: what the provider reported, or what the router counted.

Used by the stream stage (running totals while bytes flow) and by settlement (the
truth that becomes money).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # already part of output_tokens; kept for reporting
    reported: bool = False  # True when the provider said it, False when we counted

    @property
    def is_empty(self) -> bool:
        return not (self.input_tokens or self.output_tokens
                    or self.cache_read_tokens or self.cache_write_tokens)
