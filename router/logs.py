"""The process's log output: `LOG_LEVEL` and `LOG_FORMAT` (docs/configuration.md#logging).

`json` (the default): every line on stderr is one JSON object with `time` (UTC, ISO 8601),
`level`, `logger` and `message`, plus `exc` for a traceback; a record that carries fields
(the request log's line, `actors/pipeline/context.py`) has them as top-level keys, so a
log pipeline can filter on `status` or sum `cost_micros` without parsing the message.
`text`: one human-readable line per record, the fields appended as `key=value`.

Log calls pass their fields with `extra={FIELDS: {...}}`. What a record says is the
caller's responsibility: no credential or prompt is ever given to a logger.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

import orjson

if TYPE_CHECKING:
    from router.config import Config

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}
FORMATS = ("json", "text")
FIELDS = "aura_fields"  # the LogRecord attribute that carries a record's own fields
_BASE_KEYS = frozenset({"time", "level", "logger", "message", "exc", "stack"})
# Libraries that log a line per call or a traceback per dropped connection at INFO.
_QUIET = ("httpx", "httpcore", "coredis")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, FIELDS, None)
    return fields if isinstance(fields, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record (orjson: the request log is written once per call)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        for key, value in _fields(record).items():
            if key not in _BASE_KEYS:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = _fields(record)
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items()
                                   if value is not None)
        return text


def formatter(log_format: str) -> logging.Formatter:
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}")
    return JsonFormatter() if log_format == "json" else TextFormatter()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it instead of doubling every line."""


def configure_logging(config: "Config", stream: TextIO | None = None) -> None:
    """The root logger for this process, from `LOG_LEVEL` and `LOG_FORMAT` (validated by
    `router.config.load_config`)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter(config.log_format))
    root.addHandler(handler)
    level = LEVELS[config.log_level]
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
