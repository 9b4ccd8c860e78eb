"""`FakeSinks`: a strict fake of the platform's two outbox sinks (network usage, storage).

For tests of the router's durable outbox: a real HTTP server on loopback (see
`FakeService`) serving both sink paths, each with its own bearer token::

    with FakeSinks(usage_token="net-tok", storage_token="sto-tok") as sinks:
        ...  # router with AURA_NETWORK_URL = AURA_STORAGE_URL = sinks.base_url
        assert [e["request_id"] for e in sinks.usage_events()] == ["req-1"]

One instance serves both ``POST /internal/usage`` (token ``usage_token``) and
``POST /internal/messages`` (token ``storage_token``); the fault switches are per instance,
so a test that wants one sink down and the other up starts two instances and points
``AURA_NETWORK_URL`` at one and ``AURA_STORAGE_URL`` at the other.

Rules, in order (after `FakeService`'s ``slow_s`` / ``down`` / ``fail_next``): wrong or
missing bearer 401; body not JSON, a missing field or a wrong type 400 naming the field
(extra fields are allowed); ``Idempotency-Key`` missing or not equal to the body's
``event_id`` 400; an event named in `reject_event` answers its status; otherwise the first
delivery of an event id (per path) is stored, in arrival order, and answered 201, and
every later one is answered 200 and counted in ``duplicates`` (a later delivery whose body
differs from the stored one is also listed in ``conflicts``: an event id reused for
another event, which dedupe would silently drop).

Field kinds: ids, ``account``, ``model``, ``provider``, ``status`` and ``api`` are non-empty
strings; token counts and ``cost_micros`` non-negative integers; ``estimated`` a boolean;
``started_at`` / ``finished_at`` unix seconds (a number) or an ISO-8601 string, and not
finished before started; ``messages`` a list of JSON objects; ``answer`` a string.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ._service import Action, Call, FakeService, check_bearer, check_body, error_reply, json_reply

USAGE_PATH = "/internal/usage"
MESSAGES_PATH = "/internal/messages"

USAGE_FIELDS: dict[str, str] = {
    "event_id": "text", "request_id": "text", "account": "text", "model": "text",
    "provider": "text", "input_tokens": "count", "output_tokens": "count",
    "cache_read_tokens": "count", "cache_write_tokens": "count", "reasoning_tokens": "count",
    "cost_micros": "count", "estimated": "bool", "status": "text",
}
MESSAGE_FIELDS: dict[str, str] = {
    "event_id": "text", "request_id": "text", "account": "text", "model": "text",
    "messages": "objects", "answer": "str", "api": "text",
}


def _timestamp(value: Any) -> float | None:
    """Unix seconds from a number or an ISO-8601 string; None if it is neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


class FakeSinks(FakeService):
    thread_name = "fake-sinks"

    def __init__(self, usage_token: str = "network-test-token",
                 storage_token: str = "storage-test-token", *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self.tokens = {USAGE_PATH: usage_token, MESSAGES_PATH: storage_token}
        self._stored: dict[str, dict[str, dict[str, Any]]] = {USAGE_PATH: {}, MESSAGES_PATH: {}}
        self._duplicates = 0
        self._conflicts: list[str] = []
        self._rejects: dict[str, int] = {}

    # --- test-side API --------------------------------------------------------------

    def usage_events(self) -> list[dict[str, Any]]:
        """Stored usage events (first deliveries), in arrival order."""
        with self._lock:
            return list(self._stored[USAGE_PATH].values())

    def messages(self) -> list[dict[str, Any]]:
        """Stored message records (first deliveries), in arrival order."""
        with self._lock:
            return list(self._stored[MESSAGES_PATH].values())

    @property
    def duplicates(self) -> int:
        """Deliveries of an event id already stored (answered 200, not stored again)."""
        with self._lock:
            return self._duplicates

    @property
    def conflicts(self) -> list[str]:
        """Event ids delivered again with a body unlike the stored one."""
        with self._lock:
            return list(self._conflicts)

    @property
    def deliveries(self) -> list[Call]:
        """Every attempt on either sink path, whatever its answer (``Call.status``)."""
        return [c for c in self.calls() if c.path.split("?", 1)[0] in self.tokens]

    def reject_event(self, event_id: str, status: int | None) -> None:
        """Always answer ``status`` for this event id (``None``: stop rejecting it)."""
        with self._lock:
            if status is None:
                self._rejects.pop(event_id, None)
            else:
                self._rejects[event_id] = status

    def reset(self) -> None:
        """Forget everything stored and received; every switch off."""
        super().reset()
        with self._lock:
            for table in self._stored.values():
                table.clear()
            self._duplicates = 0
            self._conflicts.clear()
            self._rejects.clear()

    # --- the server side (called on the server thread) ---------------------------------

    def handle(self, call: Call) -> Action:
        path = call.path.split("?", 1)[0]
        token = self.tokens.get(path)
        if token is None or call.method != "POST":
            return error_reply(404, "not_found", f"no route {call.method} {path}")
        if refused := check_bearer(call, token):
            return refused
        if refused := check_body(call, USAGE_FIELDS if path == USAGE_PATH else MESSAGE_FIELDS):
            return refused
        event = call.json
        if path == USAGE_PATH:
            times: list[float] = []
            for name in ("started_at", "finished_at"):
                if name not in event:
                    return error_reply(400, "invalid_field", f"missing field {name!r}")
                if (seconds := _timestamp(event[name])) is None:
                    return error_reply(400, "invalid_field", f"field {name!r} must be unix "
                                       "seconds or an ISO-8601 string")
                times.append(seconds)
            if times[1] < times[0]:
                return error_reply(400, "invalid_field", "'finished_at' is before 'started_at'")
        event_id = event["event_id"]
        if call.idempotency_key != event_id:
            return error_reply(400, "idempotency_key", "Idempotency-Key must equal event_id")
        with self._lock:
            if (status := self._rejects.get(event_id)) is not None:
                return error_reply(status, "rejected", f"event {event_id!r} rejected")
            stored = self._stored[path]
            if event_id in stored:
                self._duplicates += 1
                if stored[event_id] != event:
                    self._conflicts.append(event_id)
                return json_reply(200, {"event_id": event_id, "duplicate": True})
            stored[event_id] = event
        return json_reply(201, {"event_id": event_id, "duplicate": False})
