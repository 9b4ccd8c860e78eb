"""An OpenAI Responses API client served by a Google AI (Gemini) provider: the two
bridges through Messages, composed (Responses -> Messages -> Gemini for the request,
Gemini -> Messages -> Responses for the answer and the stream).

So it translates, drops and refuses what both of them do (responses_over_messages.py,
messages_over_gemini.py): among others `temperature` above 1 and `text.format` other
than text are refused, image URLs too (send `input_image` as a base64 data: URL).
"""

from __future__ import annotations

from router.protocols import messages_over_gemini, responses_over_messages
from router.protocols.translate import ComposedBridge

BRIDGE = ComposedBridge(responses_over_messages.BRIDGE, messages_over_gemini.BRIDGE)
