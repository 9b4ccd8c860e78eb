"""Tiers: `auto`, `auto:eco`, `auto:balanced`, `auto:premium` pick a model by the prompt's
complexity (docs/configuration.md#tiers).

Pure: `classify` is a function of the request alone (its length, code, reasoning cues,
tools, images, history depth), with its thresholds from `[tiers]` in the config; the
verdict names its tier and why, for the log line and `x-aura-tier`. `auto:<tier>` skips
the classifier. Each tier's model comes from `[tiers]`, or by default from the catalog:
the cheapest model the router can serve for `eco`, the dearest for `premium`, the one in
the middle for `balanced`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from router.config_lines import TomlLines, unknown_key
from router.errors import ConfigError
from router.tokens import TextSize

TIERS = ("eco", "balanced", "premium")
TIER_MODELS = ("auto", *(f"auto:{t}" for t in TIERS))
_SCANNED = 20_000  # characters of the last user turn the cues are looked for in

_CODE = re.compile(r"```|^\s*(def|class|import|from|function|const|let|var|public|#include"
                   r"|SELECT|package|fn)\b|=>|\)\s*\{|;\s*$", re.MULTILINE)
_REASONING = re.compile(r"\b(prove|proof|derive|step[- ]by[- ]step|reason(ing)?|analy[sz]e"
                        r"|trade-?offs?|architect(ure)?|optimi[sz]e|debug|compare|evaluate"
                        r"|explain why|design)\b", re.IGNORECASE)


@dataclass(frozen=True)
class TierRules:
    """The classifier's thresholds (`[tiers]` in the config)."""

    short_prompt_chars: int = 500  # at most this, plain and shallow: eco
    long_prompt_chars: int = 6_000  # past this, with code or reasoning cues: premium
    huge_prompt_chars: int = 40_000  # past this: premium whatever it says
    deep_history: int = 16  # messages; with tools: premium; past 4 turns never eco


@dataclass(frozen=True)
class TierConfig:
    models: Mapping[str, str | None]  # tier -> model id; None: chosen from the catalog
    rules: TierRules = TierRules()


@dataclass(frozen=True)
class Verdict:
    tier: str
    reasons: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.tier} ({', '.join(self.reasons) or 'plain'})"


def parse_tiers(table: Any, where: str, lines: TomlLines | None = None) -> TierConfig:
    """`[tiers]`: `eco`, `balanced`, `premium` (model ids) and the thresholds. Errors name
    `where` (the file) and, given the file's `lines`, the line."""
    def at(*path: str) -> str:
        line = lines.line(("tiers", *path)) if lines else None
        return f"{where}:{line}" if line else where

    if table is None:
        return TierConfig({t: None for t in TIERS})
    if not isinstance(table, dict):
        raise ConfigError(f"{at()}: [tiers] must be a table")
    known = (*TIERS, *TierRules().__dict__)
    for name in table:
        if name not in known:
            raise unknown_key(at(name), name, "in [tiers]", known)
    models: dict[str, str | None] = {}
    for tier in TIERS:
        value = table.get(tier)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{at(tier)}: tiers.{tier} must be a model id, got {value!r}")
        models[tier] = value
    numbers = {}
    for name, default in TierRules().__dict__.items():
        value = table.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{at(name)}: tiers.{name} must be a positive integer, got "
                              f"{value!r}")
        numbers[name] = value
    return TierConfig(models, TierRules(**numbers))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content
                         if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def last_user_text(body: Mapping[str, Any]) -> str:
    """The text of the last user turn, whichever client format (bounded)."""
    turns = body.get("messages")
    if turns is None:
        turns = body.get("input")  # Responses
        if isinstance(turns, str):
            return turns[-_SCANNED:]
    if not isinstance(turns, list):
        return ""
    for turn in reversed(turns):
        if isinstance(turn, dict) and turn.get("role") == "user":
            return _text(turn.get("content"))[-_SCANNED:]
    return ""


def classify(body: Mapping[str, Any], size: TextSize, rules: TierRules) -> Verdict:
    text = last_user_text(body)
    length = size.text_bytes
    code = bool(_CODE.search(text))
    reasoning = bool(_REASONING.search(text))
    reasons = [f"{length} chars"]
    reasons += [name for name, seen in (("code", code), ("reasoning cues", reasoning),
                                        ("tools", size.tools), ("images", size.images > 0))
                if seen]
    if size.messages > 4:
        reasons.append(f"{size.messages} messages")
    if (length > rules.huge_prompt_chars
            or length > rules.long_prompt_chars and (code or reasoning)
            or code and reasoning and size.tools
            or size.tools and size.messages >= rules.deep_history):
        return Verdict("premium", tuple(reasons))
    if (length <= rules.short_prompt_chars and not (code or reasoning or size.tools)
            and size.images == 0 and size.messages <= 4):
        return Verdict("eco", tuple(reasons))
    return Verdict("balanced", tuple(reasons))


def tier_of(model: str) -> str | None:
    """`auto` -> "" (classify), `auto:eco` -> "eco", anything else -> None."""
    if model == "auto":
        return ""
    if model.startswith("auto:") and model[5:] in TIERS:
        return model[5:]
    return None


def default_models(served: Mapping[str, Any]) -> dict[str, str]:
    """Each tier's model from the catalog: `served` maps the models the router can reach
    to a price to rank them by (cheapest for eco, dearest for premium)."""
    ranked = sorted(served, key=lambda m: (served[m], m))
    if not ranked:
        return {}
    return {"eco": ranked[0], "balanced": ranked[len(ranked) // 2], "premium": ranked[-1]}
