"""Recorded real traffic (tests/fixtures/cassettes, see its SOURCES.md) and an upstream that replays it."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from retention_middleware._types import Receive, Scope, Send

from .asgi_tools import random_split, read_request_body, send_pieces

CASSETTES = Path(__file__).parent.parent / "fixtures" / "cassettes"


@dataclass
class Turn:
    name: str
    method: str
    path: str
    query: dict[str, Any]
    request_body: Any
    status: int
    content_type: str
    response_bytes: bytes
    response_json: Any = None
    is_sse: bool = False

    @property
    def recorded_usage(self) -> Any:
        if self.is_sse:
            for line in self.response_bytes.decode().splitlines():
                if line.startswith("data: ") and '"response.completed"' in line:
                    return json.loads(line[6:])["response"].get("usage")
            return None
        return self.response_json.get("usage") if isinstance(self.response_json, dict) else None


def load(name: str) -> list[Turn]:
    data = yaml.safe_load((CASSETTES / name).read_text(encoding="utf-8"))
    turns = []
    for raw in data["turns"]:
        request, response = raw["request"], raw["response"]
        content_type = response["headers"].get("content-type", "application/json")
        if "sse" in response:
            body = "".join(response["sse"]).encode("utf-8")
            turns.append(
                Turn(raw["filename"], request["method"], request["path"], request.get("query_params") or {},
                     request.get("body"), response["status_code"], content_type, body, is_sse=True)
            )  # fmt: skip
        else:
            # Recorded as parsed JSON; any faithful serialisation will do, as long as it is fixed.
            body = json.dumps(response["body"], ensure_ascii=False).encode("utf-8")
            turns.append(
                Turn(raw["filename"], request["method"], request["path"], request.get("query_params") or {},
                     request.get("body"), response["status_code"], content_type, body, response["body"])
            )  # fmt: skip
    return turns


def all_cassettes() -> list[str]:
    return sorted(path.name for path in CASSETTES.glob("*.yaml"))


@dataclass
class ReplayUpstream:
    """Answers the n-th request with the n-th recorded response, cut at random byte boundaries."""

    turns: list[Turn]
    seed: int = 0
    received: list[bytes] = field(default_factory=list)
    sent_pieces: list[list[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.received.append(await read_request_body(receive))
        turn = self.turns[len(self.received) - 1]
        pieces = random_split(turn.response_bytes, self._rng)
        self.sent_pieces.append(pieces)
        await send_pieces(send, turn.status, turn.content_type.encode(), pieces)
