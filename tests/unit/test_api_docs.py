"""docs/api.md stays in sync with the models and the examples.

The blocks between `<!-- BEGIN GENERATED: x -->` and `<!-- END GENERATED: x -->`
are generated here from the CRD schema and from `agent-operator render` of
each example. Regenerate with:
    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_api_docs.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from agent_operator import crd
from agent_operator.render import render_manifest, to_yaml

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "api.md"
# Simplest first.
ORDER = ["minimal", "autoscaled-with-budget", "full"]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"), key=lambda p: ORDER.index(p.stem))
BLOCK = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)"
    r"(<!-- END GENERATED: (?P=name) -->)",
    re.S,
)


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "quantity"
    kind = str(node.get("type", "object"))
    if kind == "array":
        return "[]" + _type(node["items"])
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return "map[string]" + _type(node["additionalProperties"])
    if node.get("format") == "date-time":
        return "date-time"
    return kind


def _constraints(node: dict[str, Any], rules: list[str]) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append(" \\| ".join(f"`{v}`" for v in node["enum"]))
    if "minimum" in node:
        parts.append(f"{'>' if node.get('exclusiveMinimum') else '>='} {node['minimum']}")
    if "maximum" in node:
        parts.append(f"{'<' if node.get('exclusiveMaximum') else '<='} {node['maximum']}")
    for key, text in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("maxItems", "max items"),
        ("maxProperties", "max entries"),
    ):
        if key in node:
            parts.append(f"{text} {node[key]}")
    if "pattern" in node and not node.get("x-kubernetes-int-or-string"):
        parts.append(f"pattern `{node['pattern']}`".replace("|", "\\|"))
    if node.get("x-kubernetes-list-type") == "map":
        parts.append(f"unique {', '.join(node['x-kubernetes-list-map-keys'])}")
    if node.get("x-kubernetes-list-type") == "set":
        parts.append("unique")
    items = node.get("items", {})
    item_rules = [f"CEL: {r['message']}" for r in items.get("x-kubernetes-validations", [])]
    if item_rules or any(k in items for k in ("minimum", "maximum", "enum")):
        parts.append("each " + _constraints(items, item_rules))
    parts += rules
    return "; ".join(parts)


def _rows(
    node: dict[str, Any], path: str, required: bool, rules: list[str], status: bool
) -> list[str]:
    default = node.get("default")
    shown = (
        "required"
        if required
        else (f"`{json.dumps(default)}`" if default not in (None, {}, []) else "")
    )
    description = str(node.get("description", "")).replace("|", "\\|")
    rows = [f"| `{path}` | {_type(node)} | {shown} | {_constraints(node, rules)} | {description} |"]
    if status:
        rows = [f"| `{path}` | {_type(node)} | {description} |"]
    child_rules: dict[str, list[str]] = {}
    for rule in node.get("x-kubernetes-validations", []):
        target = rule.get("fieldPath", "").lstrip(".")
        child_rules.setdefault(target, []).append(f"CEL: {rule['message']}")
    container = node
    suffix = ""
    if node.get("type") == "array" and "properties" in node.get("items", {}):
        container, suffix = node["items"], "[]"
    elif (
        isinstance(node.get("additionalProperties"), dict)
        and "properties" in node["additionalProperties"]
    ):
        container, suffix = node["additionalProperties"], "[name]"
    needed = set(container.get("required", []))
    for name, child in container.get("properties", {}).items():
        rows += _rows(
            child, f"{path}{suffix}.{name}", name in needed, child_rules.get(name, []), status
        )
    return rows


def fields_table() -> str:
    schema = crd.schema()["properties"]["spec"]
    rows = [
        "| field | type | default | validation | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    needed = set(schema.get("required", []))
    spec_rules: dict[str, list[str]] = {}
    for rule in schema.get("x-kubernetes-validations", []):
        spec_rules.setdefault(rule["fieldPath"].lstrip("."), []).append(f"CEL: {rule['message']}")
    for name, child in schema["properties"].items():
        rows += _rows(child, f"spec.{name}", name in needed, spec_rules.get(name, []), False)
    return "\n".join(rows) + "\n"


def status_table() -> str:
    schema = crd.schema()["properties"]["status"]
    rows = ["| field | type | description |", "| --- | --- | --- |"]
    for name, child in schema["properties"].items():
        rows += _rows(child, f"status.{name}", False, [], True)
    return "\n".join(rows) + "\n"


def example_block(path: Path) -> str:
    manifest = path.read_text()
    rendered = to_yaml(render_manifest(yaml.safe_load(manifest)))
    return (
        f"#### `examples/{path.name}`\n\n```yaml\n{manifest}```\n\n"
        f"<details><summary><code>agent-operator render -f examples/{path.name}</code>"
        f"</summary>\n\n```yaml\n{rendered}```\n\n</details>\n"
    )


def generated() -> dict[str, str]:
    return {
        "fields": fields_table(),
        "status": status_table(),
        "examples": "\n".join(example_block(p) for p in EXAMPLES),
    }


def test_docs_api_is_in_sync() -> None:
    text = DOC.read_text()
    blocks = generated()
    found = {m["name"] for m in BLOCK.finditer(text)}
    assert found == set(blocks), f"docs/api.md must hold the blocks {sorted(blocks)}"
    updated = BLOCK.sub(lambda m: m[1] + blocks[m["name"]] + m[4], text)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        DOC.write_text(updated)
    assert updated == text, "docs/api.md is stale: rerun with UPDATE_GOLDEN=1 and review"


def test_every_spec_field_is_documented() -> None:
    table = fields_table()
    text = (REPO / "examples" / "full.yaml").read_text()
    for line in text[text.index("\nspec:") :].splitlines():
        match = re.match(r"^  ([a-zA-Z]+):", line)
        if match:
            assert f"| `spec.{match[1]}` |" in table
    assert "CEL: must be >= minReplicas" in table
