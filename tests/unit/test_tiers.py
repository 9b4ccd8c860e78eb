"""The tier classifier and its settings (router/tiers.py): a pure function of the request,
its thresholds from `[tiers]`, each tier's model from the config or the catalog."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from router.errors import ConfigError
from router.tiers import TierRules, classify, default_models, parse_tiers, tier_of
from router.tokens import measure

RULES = TierRules()


def _verdict(text: str, *, tools: bool = False, history: int = 0,
             image: bool = False) -> str:
    turns: list[dict[str, Any]] = [{"role": "user" if i % 2 == 0 else "assistant",
                                    "content": "earlier turn"} for i in range(history)]
    content: Any = text
    if image:
        content = [{"type": "text", "text": text},
                   {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    turns.append({"role": "user", "content": content})
    body: dict[str, Any] = {"model": "auto", "messages": turns}
    if tools:
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    return classify(body, measure(body), RULES).tier


def test_a_short_plain_question_is_eco() -> None:
    assert _verdict("What is the capital of France?") == "eco"


def test_code_tools_images_or_depth_are_never_eco() -> None:
    assert _verdict("fix this:\n```py\nprint(1\n```") == "balanced"
    assert _verdict("hi", tools=True) == "balanced"
    assert _verdict("what is in this picture?", image=True) == "balanced"
    assert _verdict("and then?", history=6) == "balanced"


def test_long_code_with_reasoning_or_a_deep_tool_session_is_premium() -> None:
    code = "def f(x):\n    return x * 2\n" * 400
    assert _verdict("Explain why this is slow and optimize it step by step:\n" + code) \
        == "premium"
    assert _verdict("continue", tools=True, history=RULES.deep_history) == "premium"
    assert _verdict("a" * (RULES.huge_prompt_chars + 1)) == "premium"
    assert _verdict("Please analyze the trade-offs of this design:\n```\nclass A: pass\n```",
                    tools=True) == "premium"


def test_a_long_plain_text_is_balanced() -> None:
    assert _verdict("Summarise this letter. " + "Dear friend, all is well. " * 300) \
        == "balanced"


def test_the_tier_models_and_the_settings() -> None:
    assert [tier_of(m) for m in ("auto", "auto:eco", "auto:premium", "auto:x", "gpt-4o")] \
        == ["", "eco", "premium", None, None]
    prices = {"cheap": Decimal("0.6"), "mid": Decimal("4"), "dear": Decimal("75")}
    assert default_models(prices) == {"eco": "cheap", "balanced": "mid", "premium": "dear"}
    assert default_models({}) == {}
    parsed = parse_tiers({"eco": "cheap", "short_prompt_chars": 100}, "cfg")
    assert parsed.models == {"eco": "cheap", "balanced": None, "premium": None}
    assert parsed.rules.short_prompt_chars == 100
    for bad, says in (({"eco": 3}, "tiers.eco"), ({"deep_history": 0}, "deep_history"),
                      ({"ecco": "x"}, "unknown key 'ecco' in \\[tiers\\]; did you mean 'eco'"), ([], "must be a table")):
        with pytest.raises(ConfigError, match=says):
            parse_tiers(bad, "cfg")
