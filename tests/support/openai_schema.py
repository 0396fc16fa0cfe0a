"""Validating objects against the OpenAI OpenAPI spec's schemas (the Responses part is vendored in
tests/fixtures/openai-responses-schemas.json.gz; see its SOURCES file).

The spec lists as required on ``Response`` a few fields that OpenAI's own answers do not carry
(``output_text`` is an SDK convenience, for one). Those are the fields the recorded OpenAI answer in
tests/fixtures/cassettes/openai_responses_tool_calls_3turn.yaml lacks; they are relaxed. So is a null
where the spec names a type but OpenAI itself sends null. Nothing else is relaxed, so an object that
validates here is shaped as OpenAI's are.
"""

from __future__ import annotations

import copy
import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

from .cassettes import load

SPEC_PATHS = [Path(__file__).parent.parent / "fixtures" / "openai-responses-schemas.json.gz"]


@cache
def _spec() -> dict[str, Any] | None:
    for path in SPEC_PATHS:
        if path.exists():
            spec: dict[str, Any] = json.loads(gzip.decompress(path.read_bytes()))
            return spec
    return None


@cache
def _relaxed_spec() -> dict[str, Any]:
    spec = _spec()
    if spec is None:
        raise FileNotFoundError(f"the vendored OpenAI schemas are missing: {SPEC_PATHS}")
    spec = copy.deepcopy(spec)
    recorded = load("openai_responses_tool_calls_3turn.yaml")[0].response_json
    own = spec["components"]["schemas"]["Response"]["allOf"][2]
    own["required"] = [name for name in own["required"] if name in recorded]
    usage = spec["components"]["schemas"]["ResponseUsage"]["properties"]["input_tokens_details"]
    usage["required"] = [name for name in usage["required"] if name in recorded["usage"]["input_tokens_details"]]
    _allow_null(spec)
    return spec


def _allow_null(node: Any) -> None:
    # OpenAI answers null for unset fields the spec types without null (``user``, for one).
    if isinstance(node, dict):
        kind = node.get("type")
        if isinstance(kind, str) and kind != "null":
            node["type"] = [kind, "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        for child in node.values():
            _allow_null(child)
    elif isinstance(node, list):
        for child in node:
            _allow_null(child)


@cache
def event_schema(event_type: str) -> str:
    """The name of the stream event schema whose ``type`` is ``event_type``."""
    schemas = _relaxed_spec()["components"]["schemas"]
    for option in schemas["ResponseStreamEvent"]["anyOf"]:
        name = option["$ref"].rsplit("/", 1)[1]
        if event_type in (schemas[name].get("properties", {}).get("type", {}).get("enum") or ()):
            return name
    raise AssertionError(f"no stream event in the spec has type {event_type!r}")


def validate_event(event: dict[str, Any]) -> None:
    validate(event, event_schema(event["type"]))


def validate(value: Any, schema_name: str) -> None:
    """Raise jsonschema.ValidationError when ``value`` does not match ``components.schemas[schema_name]``."""
    import jsonschema

    validator = _validator(schema_name)
    errors = sorted(validator.iter_errors(value), key=lambda error: len(list(error.path)))
    if errors:
        raise jsonschema.ValidationError(f"{schema_name}: {errors[0].message} at {list(errors[0].path)}")


@cache
def _validator(schema_name: str) -> Any:
    import jsonschema

    root = {**_relaxed_spec(), "$ref": f"#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(root)
