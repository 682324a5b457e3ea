"""JSON Schema (draft 2020-12) files of the three public messages, generated from the models in
contract/messages.py, for producers and consumers that are not this Python code (docs/contract.md).

    python -m contract.schemas          # rewrite the files after changing a model
    python -m contract.schemas --check  # exit 1, naming the files, when they differ from the models

``event`` is what a producer may send to the events topic: the validation schema, what
:func:`contract.messages.parse_event` accepts (less what JSON Schema cannot say: the size limit,
integers written with a fraction or exponent, lone surrogates; docs/contract.md lists them).
``recommendation`` and ``dead_letter`` are what a consumer receives: the serialization schemas,
every field always present. The files use no ``$ref`` and only keywords that mean the same from
draft-04 to 2020-12, so that any JSON Schema validator reads them alike. Every object says
``additionalProperties`` outright: ``true`` where a reader ignores fields it does not know (JSON
Schema's default), ``false`` where the model forbids them.
The internal topics (tallies, control) are not part of the public contract and have no file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from contract.messages import DeadLetter, Event, Recommendation

DIRECTORY = Path(__file__).resolve().parent
DIALECT = "https://json-schema.org/draft/2020-12/schema"

# file stem -> (model, the side of the wire a reader of the file is on)
MODELS: dict[str, tuple[type[BaseModel], JsonSchemaMode]] = {
    "event": (Event, "validation"),  # producers send it, parse_event validates it
    "recommendation": (Recommendation, "serialization"),  # the worker publishes it
    "dead_letter": (DeadLetter, "serialization"),
}


def path(name: str, directory: Path = DIRECTORY) -> Path:
    return directory / f"{name}.schema.json"


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Each ``{"$ref": "#/$defs/X"}`` replaced by X itself (the models are not recursive): validators
    of draft-04 and draft-07 know ``definitions``, not ``$defs``, and some skip an unresolved ``$ref``
    without a word (python-rapidjson passes anything there)."""
    if isinstance(node, dict):
        if set(node) == {"$ref"}:
            return _inline(defs[node["$ref"].removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(value, defs) for value in node]
    return node


def _explicit_additional_properties(node: Any) -> None:
    """pydantic writes ``additionalProperties: false`` for ``extra="forbid"`` and nothing otherwise."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", True)
        for value in node.values():
            _explicit_additional_properties(value)
    elif isinstance(node, list):
        for value in node:
            _explicit_additional_properties(value)


def schema(name: str) -> dict[str, Any]:
    model, mode = MODELS[name]
    body = model.model_json_schema(mode=mode)
    body = _inline(body, body.pop("$defs", {}))
    _explicit_additional_properties(body)
    return {"$schema": DIALECT,
            "$comment": f"Generated from contract.messages.{model.__name__} by `python -m contract.schemas`; "
                        "do not edit. Rules: docs/contract.md", **body}


def render(name: str) -> str:
    return json.dumps(schema(name), indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = DIRECTORY) -> list[Path]:
    """Writes every schema file; returns the ones whose content changed."""
    changed = []
    for name in MODELS:
        target, text = path(name, directory), render(name)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    return changed


def drifted(directory: Path = DIRECTORY) -> list[Path]:
    """The schema files that are missing or differ from what the models generate."""
    return [path(name, directory) for name in MODELS
            if not path(name, directory).exists() or path(name, directory).read_text(encoding="utf-8") != render(name)]
