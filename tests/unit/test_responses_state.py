"""The router's numbering of Responses streams (router/protocols/responses_state.py): a
resume after sequence number N must find exactly the events after it, whatever the
upstream numbered and whatever the text of the answer contains."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from router.protocols.responses_state import ResponseWatch, log_after, renumber, retrieved

texts = st.text(alphabet=st.sampled_from('ab"\\:,{} _sequence_number0123456789'),
                max_size=40)


@given(delta=texts, upstream=st.integers(-5, 10**6), number=st.integers(0, 10**6),
       spaced=st.booleans())
def test_renumber_sets_the_top_level_key_and_nothing_else(
        delta: str, upstream: int, number: int, spaced: bool) -> None:
    event = {"type": "response.output_text.delta", "delta": delta,
             "note": '"sequence_number": 7', "sequence_number": upstream}
    data = orjson.dumps(event)
    if spaced:
        data = data.replace(b'"sequence_number":', b'"sequence_number" : ')
    out = orjson.loads(renumber(data, number))
    assert out == {**event, "sequence_number": number}


@given(number=st.integers(0, 10**6))
def test_an_event_without_a_number_gets_one(number: int) -> None:
    assert orjson.loads(renumber(b'{"error":{"message":"x"}}', number)) == {
        "error": {"message": "x"}, "sequence_number": number}
    assert orjson.loads(renumber(b"{}", number)) == {"sequence_number": number}


def test_resume_positions_follow_the_numbering() -> None:
    # log position n holds sequence number n - 1: after N means after position N + 1
    assert log_after(None) == 0
    assert log_after(0) == 1
    assert log_after(41) == 42


def test_the_watch_keeps_the_id_and_the_latest_object() -> None:
    watch = ResponseWatch(background=True)
    created = orjson.dumps({"type": "response.created", "sequence_number": 99,
                            "response": {"id": "resp_1", "status": "in_progress"}})
    data = orjson.loads(watch.event(b"response.created", created, 1))
    assert data["sequence_number"] == 0 and data["response"]["background"] is True
    assert watch.response_id == "resp_1"
    watch.event(b"response.output_text.delta",
                b'{"type":"response.output_text.delta","delta":"x","sequence_number":3}', 2)
    completed = orjson.dumps({"type": "response.completed", "sequence_number": 5,
                              "response": {"id": "resp_1", "status": "completed"}})
    watch.event(b"response.completed", completed, 3)
    assert watch.snapshot is not None and watch.snapshot["status"] == "completed"
    assert watch.response_id == "resp_1"


def test_what_a_retrieve_shows() -> None:
    running = {"id": "resp_1", "status": "in_progress"}
    assert retrieved(running, done=False, cancelled=False) == running
    assert retrieved(running, done=True, cancelled=True)["status"] == "cancelled"
    failed = retrieved(running, done=True, cancelled=False)
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    done = {"id": "resp_1", "status": "completed"}
    assert retrieved(done, done=True, cancelled=True) == done  # finished before the cancel
    assert retrieved(None, done=True, cancelled=False) is None
