"""The committed JSON Schema files are what the models generate, and any validator reads them alike."""
import json
import subprocess
import sys

from contract import schemas
from contract.schemas.__main__ import main

# Keywords with the same meaning from draft-04 to 2020-12: no $ref/$defs/definitions, nothing newer.
PORTABLE = {"$schema", "$comment", "title", "description", "default", "type", "properties", "required",
            "additionalProperties", "items", "enum", "anyOf", "minLength", "maxLength", "minimum", "maximum",
            "minItems"}


def keywords(node, out):
    if isinstance(node, dict):
        for key, value in node.items():
            out.add(key)
            if key == "properties":
                for sub in value.values():
                    keywords(sub, out)
            elif key not in ("enum", "required", "default"):
                keywords(value, out)
    elif isinstance(node, list):
        for value in node:
            keywords(value, out)
    return out


def test_the_committed_files_match_the_models():
    """Fails after a model change until `python -m contract.schemas` is run and its output committed."""
    assert set(schemas.MODELS) == {"event", "recommendation", "dead_letter"}
    for name in schemas.MODELS:
        committed = schemas.path(name).read_text(encoding="utf-8")
        assert committed == schemas.render(name), f"{schemas.path(name)} is stale: run `python -m contract.schemas`"
    assert schemas.drifted() == []


def test_check_names_a_drifted_or_missing_file_and_write_repairs_it(tmp_path, capsys):
    assert schemas.write(tmp_path) == [schemas.path(n, tmp_path) for n in schemas.MODELS]
    assert schemas.drifted(tmp_path) == [] and schemas.write(tmp_path) == []
    event = schemas.path("event", tmp_path)
    edited = json.loads(event.read_text())
    edited["properties"]["ts"]["maximum"] += 1  # a hand edit, or a model changed without regenerating
    event.write_text(json.dumps(edited, indent=2))
    schemas.path("dead_letter", tmp_path).unlink()
    assert schemas.drifted(tmp_path) == [event, schemas.path("dead_letter", tmp_path)]
    assert schemas.write(tmp_path) == [event, schemas.path("dead_letter", tmp_path)]
    assert schemas.drifted(tmp_path) == []


def test_the_command_checks_the_committed_files():
    assert main(["--check"]) == 0
    done = subprocess.run([sys.executable, "-m", "contract.schemas", "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_files_are_portable():
    for name in schemas.MODELS:
        schema = json.loads(schemas.render(name))
        used = keywords(schema, set())
        assert used <= PORTABLE, f"{name}: {used - PORTABLE} mean different things (or nothing) in older drafts"
        assert schema["type"] == "object" and schema["$schema"].endswith("/draft/2020-12/schema")


def test_extra_fields_are_allowed_in_every_public_message_as_the_rule_says():
    """docs/contract.md: readers ignore fields they do not know, so every object allows more."""
    def objects(node):
        if isinstance(node, dict):
            if node.get("type") == "object":
                yield node
            for value in node.values():
                yield from objects(value)
        elif isinstance(node, list):
            for value in node:
                yield from objects(value)

    for name in schemas.MODELS:
        found = list(objects(schemas.schema(name)))
        assert found and all(o["additionalProperties"] is True for o in found), name
