"""CustomResourceDefinition YAML -> one JSON schema per served version, laid out for kubeconform.

    python crd_to_jsonschema.py OUT_DIR CRD.yaml [CRD.yaml ...]

writes OUT_DIR/<group>/<kind lowercase>_<version>.json for each version of each CRD, the layout
that kubeconform's ``-schema-location 'OUT_DIR/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'``
reads. The schema is the CRD's own ``openAPIV3Schema``, turned from OpenAPI into JSON schema the way
the API server reads it: ``nullable: true`` admits null, ``x-kubernetes-int-or-string`` admits an
integer or a string, and an object that lists its properties (without
``x-kubernetes-preserve-unknown-fields`` or ``additionalProperties``) admits no others, which is
what makes kubeconform's -strict catch a misspelt field in a custom resource too.

deploy/setup_k8s_tools.sh runs it on the CRDs it takes from the operators' own packages (see
deploy/helm/schemas/README.md). Needs PyYAML (in the project's .venv).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k != "nullable"}
    for key in ("properties", "patternProperties", "definitions"):  # maps of name -> schema
        if isinstance(node.get(key), dict):
            out[key] = {name: to_json_schema(sub) for name, sub in node[key].items()}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if ("properties" in node and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def convert(crd: dict[str, Any], out_dir: Path) -> list[Path]:
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    written = []
    for version in spec["versions"]:
        schema = (version.get("schema") or {}).get("openAPIV3Schema") or spec.get("validation", {}).get(
            "openAPIV3Schema")
        if schema is None:
            continue
        schema = to_json_schema(schema)
        schema.setdefault("properties", {})
        # Every object carries these, whether or not the CRD spells them out.
        schema["properties"].setdefault("apiVersion", {"type": "string"})
        schema["properties"].setdefault("kind", {"type": "string"})
        schema["properties"].setdefault("metadata", {"type": "object"})
        schema["properties"]["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
        schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        schema["description"] = (f"{kind} {group}/{version['name']}, from the CRD "
                                 f"{crd['metadata']['name']} (openAPIV3Schema)")
        path = out_dir / group / f"{kind.lower()}_{version['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = Path(argv[0])
    count = 0
    for name in argv[1:]:
        with open(name) as f:
            for doc in yaml.safe_load_all(f):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    for path in convert(doc, out_dir):
                        print(path.relative_to(out_dir))
                        count += 1
    if not count:
        print(f"no CustomResourceDefinition in {argv[1:]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
