"""The vendored OpenAI OpenAPI spec as JSON-Schema validators, for the conformance tests.

The spec (tests/spec/, pinned revision) is OpenAPI 3.1, whose schemas are JSON Schema 2020-12, so
``jsonschema`` validates against ``#/components/schemas/<Name>`` directly. Its ``discriminator``
keywords have no ``mapping``; a validator following OpenAPI's implicit mapping would look for schemas
named after each type value, which do not exist, so they are stripped and every ``oneOf`` is checked
as plain JSON Schema. Some schemas still use OpenAPI 3.0's ``nullable: true``, which JSON Schema would
ignore; it is read as the spec means it (null allowed). ``SpecValidator.count`` says how many validations a run made.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent.parent / "spec" / "openai-openapi.json.gz"
_URI = "urn:openai-openapi"


def _as_json_schema(node: Any) -> Any:
    """The spec's schemas as plain JSON Schema 2020-12: ``discriminator`` dropped, and the OpenAPI 3.0
    ``nullable: true`` some schemas still carry (JSON Schema ignores it) turned into a null type."""
    if isinstance(node, list):
        return [_as_json_schema(value) for value in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _as_json_schema(value) for key, value in node.items() if key != "discriminator"}
    if schema.pop("nullable", False) is True:
        kind = schema.get("type")
        if isinstance(kind, str):
            schema["type"] = [kind, "null"]
        if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
        if "type" not in schema:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


@cache
def _spec() -> dict[str, Any]:
    with gzip.open(SPEC_PATH, "rb") as handle:
        spec: dict[str, Any] = _as_json_schema(json.load(handle))
    return spec


class SpecValidator:
    """Validates instances against the spec's component schemas and counts every validation."""

    def __init__(self) -> None:
        spec = _spec()
        self.schemas: dict[str, Any] = spec["components"]["schemas"]
        resource: Resource[Any] = Resource(contents=spec, specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(_URI, resource)
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self.count = 0

    def _validator(self, name: str) -> jsonschema.protocols.Validator:
        validator = self._validators.get(name)
        if validator is None:
            if name not in self.schemas:
                raise KeyError(f"no schema {name!r} in the spec")
            schema = {"$ref": f"{_URI}#/components/schemas/{name}"}
            validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
            self._validators[name] = validator
        return validator

    def errors(self, instance: Any, name: str) -> list[str]:
        """Why ``instance`` is not a valid ``name``; empty when it is. Counts as one validation."""
        self.count += 1
        found = sorted(self._validator(name).iter_errors(instance), key=lambda error: list(error.absolute_path))
        return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message[:300]}" for error in found]

    def check(self, instance: Any, name: str) -> None:
        """Raise AssertionError naming every violation of ``name`` by ``instance``."""
        problems = self.errors(instance, name)
        if problems:
            raise AssertionError(f"not a valid {name}:\n  " + "\n  ".join(problems[:20]))
