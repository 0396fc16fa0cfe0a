"""Responses ``input`` items (and ``instructions``) as Chat Completions ``messages``.

The rules, each one documented in the README's table for chat-only servers:

- ``instructions`` becomes the first message, a ``system`` one.
- ``developer`` becomes ``system``: TGI, llama.cpp and Ollama chat templates know only system, user,
  assistant and tool.
- Text-only content becomes one string (templates that take only strings work); content with images
  or files stays a list of chat parts.
- An assistant ``message`` item, the ``function_call`` items after it and a ``reasoning`` item before
  it all become one assistant message (``content``, ``tool_calls``, ``reasoning_content``): parallel
  calls stay one turn, as the model produced them.
- ``function_call_output`` becomes a ``tool`` message.
- A ``reasoning`` item's readable text (its ``content``, else its ``summary``) goes on the next
  assistant message as ``reasoning_content``, which vLLM, SGLang and llama.cpp read and the others
  ignore. A reasoning item with only ``encrypted_content`` is dropped: no chat server can read it.
- Anything else (built-in tool calls, ``item_reference``) is a 400 naming the item.
"""

from __future__ import annotations

from typing import Any

from ..errors import OpenAIError, invalid_request

Message = dict[str, Any]

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def untranslatable(param: str, what: str) -> OpenAIError:
    return invalid_request(
        f"{what} cannot be served by this server: its upstream speaks Chat Completions only "
        "(RETENTION_RESPONSES_BACKEND=chat), which has no equivalent.",
        param=param,
        code="unsupported_parameter",
    )


def _bad(param: str, expected: str) -> OpenAIError:
    return invalid_request(f"Invalid '{param}': expected {expected}.", param=param, code="invalid_type")


def _text(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise _bad(param, "a string")
    return value


def _part(part: Any, param: str) -> dict[str, Any]:
    """One Responses content part as a chat content part."""
    if not isinstance(part, dict):
        raise _bad(param, "a content part object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return {"type": "text", "text": _text(part.get("text"), f"{param}.text")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            # A file_id names a file in OpenAI's file store, which a chat server does not have.
            raise untranslatable(f"{param}.file_id", "An image given by file_id")
        image: dict[str, Any] = {"url": url}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_data") is None:
            raise untranslatable(f"{param}.file_id", "A file given by file_id or file_url")
        file = {key: part[key] for key in ("file_data", "filename") if part.get(key) is not None}
        return {"type": "file", "file": file}
    if kind == "input_audio":
        audio = part.get("input_audio")
        return {"type": "input_audio", "input_audio": audio}
    raise untranslatable(f"{param}.type", f"A content part of type {kind!r}")


def _content(content: Any, param: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(param, "a string or an array of content parts")
    parts = [_part(part, f"{param}[{index}]") for index, part in enumerate(content)]
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _refusal(content: Any) -> str | None:
    if isinstance(content, list):
        refusals = [part.get("refusal") for part in content if isinstance(part, dict) and part.get("type") == "refusal"]
        texts = [text for text in refusals if isinstance(text, str)]
        if texts:
            return "".join(texts)
    return None


def _reasoning_text(item: dict[str, Any], param: str) -> str | None:
    for key in ("content", "summary"):
        parts = item.get(key)
        if isinstance(parts, list) and parts:
            text = "".join(_part(part, f"{param}.{key}[{index}]")["text"] for index, part in enumerate(parts))
            if text:
                return text
    return None


def _tool_output(output: Any, param: str) -> str | list[dict[str, Any]]:
    return _content(output, param)


class _Builder:
    """Accumulates messages; holds the assistant turn being built so its items merge into one."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.assistant: Message | None = None  # the last message, while it is an open assistant turn
        self.reasoning: str | None = None  # waiting for the assistant message it belongs to

    def close(self) -> None:
        self.assistant = None

    def open_assistant(self) -> Message:
        if self.assistant is None:
            self.assistant = {"role": "assistant", "content": None}
            self.messages.append(self.assistant)
        if self.reasoning is not None:
            self.assistant["reasoning_content"] = self.reasoning
            self.reasoning = None
        return self.assistant

    def add(self, message: Message) -> None:
        self.close()
        self.messages.append(message)


def chat_messages(instructions: Any, items: list[Any]) -> list[Message]:
    """``instructions`` and the (already rehydrated) input items as chat messages; raises 400."""
    builder = _Builder()
    if instructions is not None:
        builder.add({"role": "system", "content": _text(instructions, "instructions")})
    for index, item in enumerate(items):
        param = f"input[{index}]"
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = _ROLES.get(item.get("role"))
            if role is None:
                raise _bad(f"{param}.role", "one of user, system, developer or assistant")
            content = _content(item.get("content"), f"{param}.content")
            if role != "assistant":
                builder.add({"role": role, "content": content})
                continue
            if builder.assistant is not None and (builder.assistant.get("tool_calls") or builder.assistant["content"]):
                builder.close()  # a second assistant message after a complete turn is a turn of its own
            assistant = builder.open_assistant()
            text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content)
            assistant["content"] = (assistant["content"] or "") + text
            refusal = _refusal(item.get("content"))
            if refusal is not None:
                assistant["refusal"] = refusal
        elif kind == "function_call":
            call = {
                "id": _text(item.get("call_id"), f"{param}.call_id"),
                "type": "function",
                "function": {
                    "name": _text(item.get("name"), f"{param}.name"),
                    "arguments": _text(item.get("arguments"), f"{param}.arguments"),
                },
            }
            builder.open_assistant().setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            output = _tool_output(item.get("output"), f"{param}.output")
            builder.add(
                {"role": "tool", "tool_call_id": _text(item.get("call_id"), f"{param}.call_id"), "content": output},
            )
        elif kind == "reasoning":
            builder.close()
            builder.reasoning = _reasoning_text(item, param)
        else:
            raise untranslatable(f"{param}.type", f"An input item of type {kind!r}")
    return builder.messages
