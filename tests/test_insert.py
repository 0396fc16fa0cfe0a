"""``store`` and ``previous_response_id`` in every response object the client sees, also when the
upstream (``transformers serve``) writes neither key: inserted after the object's ``{``, every other
byte as the upstream sent it, in JSON bodies and in every event that carries a response."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from retention_middleware import RetentionMiddleware, RetentionSettings
from retention_middleware._types import Receive, Scope, Send
from retention_middleware.responses.insert import KeyInserter

from support.asgi_tools import asgi_client, random_split, read_request_body, send_pieces


class KeylessUpstream:
    """Answers like ``transformers serve``: response objects without ``store`` or ``previous_response_id``."""

    def __init__(self, split_seed: int | None = None) -> None:
        self.split_seed = split_seed
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = json.loads(await read_request_body(receive))
        self.count += 1
        part = {"type": "output_text", "text": "ok", "annotations": []}
        item = {"id": f"msg_{self.count}", "type": "message", "role": "assistant", "status": "completed",
                "content": [part]}  # fmt: skip
        response = {"id": f"resp_keyless{self.count}", "object": "response", "created_at": 1, "model": "m",
                    "status": "completed", "output": [item]}  # fmt: skip
        if not request.get("stream"):
            await send_pieces(send, 200, b"application/json", [orjson.dumps(response)])
            return
        early = {**response, "status": "in_progress", "output": []}
        events = [("response.created", {"response": early}), ("response.in_progress", {"response": early}),
                  ("response.output_text.delta", {"item_id": "m", "output_index": 0, "delta": "ok"}),
                  ("response.completed", {"response": response})]  # fmt: skip
        body = b"".join(
            b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **fields, "sequence_number": n})
            + b"\n\n" for n, (kind, fields) in enumerate(events)
        )  # fmt: skip
        pieces = random_split(body, random.Random(self.split_seed)) if self.split_seed is not None else [body]
        await send_pieces(send, 200, b"text/event-stream", pieces)


def responses_in(answer: Any) -> list[dict[str, Any]]:
    if answer.headers["content-type"].startswith("application/json"):
        return [answer.json()]
    return [json.loads(line[6:])["response"] for line in answer.text.splitlines() if '"response":{' in line]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("seed", [None, 1, 2, 3])
async def test_absent_keys_are_inserted_everywhere_the_client_looks(stream: bool, seed: int | None) -> None:
    app = RetentionMiddleware(KeylessUpstream(seed), RetentionSettings())
    async with asgi_client(app) as http:
        first = await http.post("/v1/responses", json={"model": "m", "input": "a", "stream": stream})
        first_id = responses_in(first)[-1]["id"]
        second = await http.post(
            "/v1/responses", json={"model": "m", "input": "b", "stream": stream, "previous_response_id": first_id}
        )
        unstored = await http.post("/v1/responses", json={"model": "m", "input": "c", "stream": stream, "store": False})
        stored = (await http.get(f"/v1/responses/{responses_in(second)[-1]['id']}")).json()
    assert len(responses_in(first)) == (3 if stream else 1)
    assert all(r["store"] is True and r["previous_response_id"] is None for r in responses_in(first))
    assert all(r["store"] is True and r["previous_response_id"] == first_id for r in responses_in(second))
    assert all(r["store"] is False and r["previous_response_id"] is None for r in responses_in(unstored))
    assert stored["store"] is True and stored["previous_response_id"] == first_id
    # Inserted where each response object closes, the upstream's own bytes untouched around them.
    inserted = b',"store":true,"previous_response_id":null}'
    assert first.content.count(inserted) == len(responses_in(first))


@pytest.mark.parametrize("seed", range(30))
def test_insertion_keeps_every_other_byte_however_the_stream_is_split(seed: int) -> None:
    tricky = {"id": "r", "x": '"response":{"store":1}', "nested": {"store": [1, {"a": "}"}]}, "e": '\\"'}
    events = [
        {"type": "response.created", "response": tricky, "sequence_number": 0},
        {"type": "response.output_text.delta", "delta": '{"response":{}}', "sequence_number": 1},
        {"sequence_number": 2, "response": {}, "type": "response.completed"},
        {"type": "response.completed", "response": {"store": False, "previous_response_id": None}},
    ]
    raw = b"".join(b"event: x\ndata: " + orjson.dumps(event) + b"\n\n" for event in events)
    inserter = KeyInserter(sse=True, store=True, previous_response_id="resp_0")
    out = b"".join(inserter.feed(piece) for piece in random_split(raw, random.Random(seed), max_piece=7))
    members = b'"store":true,"previous_response_id":"resp_0"'
    parsed = [json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")]
    assert parsed[0]["response"] == {**tricky, "store": True, "previous_response_id": "resp_0"}
    assert parsed[1] == events[1]  # a delta is never touched, whatever its text looks like
    assert parsed[2]["response"] == {"store": True, "previous_response_id": "resp_0"}
    assert parsed[3] == events[3]  # both keys present: nothing to insert
    assert out.replace(b"," + members, b"").replace(members, b"") == raw


def test_a_json_body_gets_the_keys_before_its_last_brace() -> None:
    inserter = KeyInserter(sse=False, store=False, previous_response_id=None)
    body = b'{"id": "r",\n "output": [{"store": 1}]}\n'
    assert inserter.feed(body) == b'{"id": "r",\n "output": [{"store": 1}],"store":false,"previous_response_id":null}\n'


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "r",\n "output": [{"store": 1}]}\n',
        b"  {}  ",
        b'{"id":"r","store":true}',
        b'{"id":"r","store":false,"previous_response_id":"resp_1"}',
        b'{"id":"r","text":"a } in a string","previous_response_id":null}',
    ],
)
def test_a_whole_parsed_body_gets_the_same_bytes_as_the_byte_walk(body: bytes) -> None:
    # The fast path for a JSON answer that came in one message must write what feed writes.
    present = {key.encode() for key in ("store", "previous_response_id") if key in orjson.loads(body)}
    walked = KeyInserter(sse=False, store=True, previous_response_id="resp_0").feed(body)
    whole = KeyInserter(sse=False, store=True, previous_response_id="resp_0").feed_whole(body, present)
    assert whole == walked


def test_a_body_already_fed_in_parts_keeps_being_walked() -> None:
    inserter = KeyInserter(sse=False, store=True, previous_response_id=None)
    first = inserter.feed(b'{"id":"r","output":[{"te')
    rest = inserter.feed_whole(b'xt":"}"}]}', set())  # the second part alone says nothing of the whole
    assert first + rest == b'{"id":"r","output":[{"text":"}"}],"store":true,"previous_response_id":null}'
