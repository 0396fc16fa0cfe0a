"""Assembling a streamed chat completion or completion into the object a JSON answer would have been.

Used only for content records (the documented opt-in exceptions), which keep the result of a stream
rather than its raw events; a request without content logging never accumulates its deltas.
"""

from __future__ import annotations

from typing import Any


class _Choice:
    __slots__ = ("role", "text", "content", "reasoning", "tool_calls", "finish_reason")

    def __init__(self) -> None:
        self.role = "assistant"
        self.text: list[str] = []  # completions
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: Any = None


class StreamAssembler:
    """Feed parsed chunks with ``add``; ``result()`` is the equivalent non-streamed answer."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None
        self._chat = False

    def add(self, chunk: dict[str, Any]) -> None:
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in self._head:
                self._head[key] = chunk[key]
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        for raw in choices:
            if not isinstance(raw, dict):
                continue
            index = raw.get("index", 0)
            choice = self._choices.setdefault(index if isinstance(index, int) else 0, _Choice())
            if raw.get("finish_reason") is not None:
                choice.finish_reason = raw["finish_reason"]
            if isinstance(raw.get("text"), str):
                choice.text.append(raw["text"])
            delta = raw.get("delta")
            if isinstance(delta, dict):
                self._chat = True
                self._add_delta(choice, delta)

    @staticmethod
    def _add_delta(choice: _Choice, delta: dict[str, Any]) -> None:
        if isinstance(delta.get("role"), str):
            choice.role = delta["role"]
        if isinstance(delta.get("content"), str):
            choice.content.append(delta["content"])
        for field in ("reasoning_content", "reasoning"):
            if isinstance(delta.get(field), str):
                choice.reasoning.append(delta[field])
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            index = call.get("index", 0)
            kept = choice.tool_calls.setdefault(
                index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
            if call.get("id"):
                kept["id"] = call["id"]
            function = call.get("function")
            if isinstance(function, dict):
                kept["function"]["name"] += function.get("name") or ""
                kept["function"]["arguments"] += function.get("arguments") or ""

    def result(self) -> dict[str, Any]:
        choices = []
        for index in sorted(self._choices):
            choice = self._choices[index]
            if self._chat:
                message: dict[str, Any] = {"role": choice.role, "content": "".join(choice.content)}
                if choice.reasoning:
                    message["reasoning_content"] = "".join(choice.reasoning)
                if choice.tool_calls:
                    message["tool_calls"] = [choice.tool_calls[i] for i in sorted(choice.tool_calls)]
                choices.append({"index": index, "message": message, "finish_reason": choice.finish_reason})
            else:
                choices.append({"index": index, "text": "".join(choice.text), "finish_reason": choice.finish_reason})
        kind = "chat.completion" if self._chat else "text_completion"
        return {**self._head, "object": kind, "choices": choices, "usage": self._usage}
