"""Validating bodies against the schemas of OpenAI's OpenAPI spec.

``tests/fixtures/openai_conversation_schemas.json`` holds the schemas the Conversations API answers
with and everything they reference, taken from openai/openai-openapi (see its ``x-source``), with the
``discriminator`` keywords removed so ``oneOf`` is validated as plain JSON Schema (the spec is OpenAPI
3.1, whose schemas are JSON Schema 2020-12).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

_SCHEMAS = Path(__file__).resolve().parent.parent / "fixtures" / "openai_conversation_schemas.json"


@functools.cache
def _components() -> dict[str, Any]:
    return {"components": json.loads(_SCHEMAS.read_text())["components"]}


def assert_matches_schema(body: Any, schema: str) -> None:
    """Fail unless ``body`` is valid against ``#/components/schemas/<schema>``."""
    validator = jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", **_components()})
    errors = sorted(validator.iter_errors(body), key=lambda error: list(error.path))
    assert not errors, f"not a valid {schema}: " + "; ".join(error.message[:200] for error in errors[:3])
