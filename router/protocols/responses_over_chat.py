"""An OpenAI Responses API client served by a provider that speaks only Chat Completions
(llama.cpp, vLLM, Ollama, OpenRouter, any OpenAI-compatible server): the two bridges
through Messages, composed (Responses -> Messages -> Chat for the request, Chat ->
Messages -> Responses for the answer and the stream), as responses_over_gemini.py does
for Gemini.

So it translates, drops and refuses what both of them do (responses_over_messages.py,
messages_over_chat.py): among others `text.format` other than text, custom tools and
`item_reference` items are refused; reasoning settings and summaries are dropped.
"""

from __future__ import annotations

from router.protocols import messages_over_chat, responses_over_messages
from router.protocols.translate import ComposedBridge

BRIDGE = ComposedBridge(responses_over_messages.BRIDGE, messages_over_chat.BRIDGE)
