"""`agent-operator render -f FILE`: validate a manifest offline, print its children.

The same models and builders as the operator: what this prints is what the
operator applies, except for the owner's uid, which only the API server
assigns (a stable placeholder here keeps the output reproducible).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Mapping
from typing import Any, Final, TextIO, get_args

import yaml

from agent_operator.api import AgentDeployment, InvalidSpec
from agent_operator.builders import BuildOptions, desired_children
from agent_operator.builders.options import PullPolicy

EXIT_INVALID: Final = 2
PLACEHOLDER_NAMESPACE: Final = uuid.UUID("6a9c6e3b-0f1d-5b8e-9c3a-2f4d1e0a7b55")


def placeholder_uid(namespace: str, name: str) -> str:
    """A uid that depends only on the object's identity, never on time or chance."""
    return str(uuid.uuid5(PLACEHOLDER_NAMESPACE, f"{namespace}/{name}"))


def render_manifest(
    body: Mapping[str, Any], options: BuildOptions | None = None, namespace: str = "default"
) -> list[dict[str, Any]]:
    """Children of one AgentDeployment manifest; raises InvalidSpec naming bad fields."""
    manifest = dict(body)
    meta = dict(manifest.get("metadata") or {})
    meta.setdefault("namespace", namespace)
    if isinstance(meta.get("name"), str) and not meta.get("uid"):
        meta["uid"] = placeholder_uid(str(meta["namespace"]), meta["name"])
    manifest["metadata"] = meta
    return desired_children(AgentDeployment.from_body(manifest), options)


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # budget.json reads as a block, not as one escaped line.
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """A YAML stream, one document per object."""
    return yaml.dump_all(
        objects, Dumper=_Dumper, sort_keys=False, width=1_000_000, explicit_start=True
    )


def _load(stream: TextIO, label: str) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    except yaml.YAMLError as e:
        raise InvalidSpec([f"{label}: not valid YAML: {e}"]) from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="agent-operator render",
        description="Validate AgentDeployment manifests offline and print their children.",
    )
    parser.add_argument("-f", "--filename", required=True, help="manifest file, - for stdin")
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    parser.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace of manifests that name none (default: default)",
    )
    parser.add_argument("--gateway-image", default=BuildOptions.gateway_image)
    parser.add_argument(
        "--gateway-image-pull-policy",
        choices=get_args(PullPolicy),
        default=BuildOptions.gateway_image_pull_policy,
    )
    args = parser.parse_args(argv)
    options = BuildOptions(
        gateway_image=args.gateway_image, gateway_image_pull_policy=args.gateway_image_pull_policy
    )
    label = "<stdin>" if args.filename == "-" else args.filename
    errors: list[str] = []
    children: list[dict[str, Any]] = []
    try:
        if args.filename == "-":
            documents = _load(sys.stdin, label)
        else:
            with open(args.filename, encoding="utf-8") as f:
                documents = _load(f, label)
    except OSError as e:
        print(f"{label}: {e.strerror or e}", file=sys.stderr)
        return EXIT_INVALID
    except InvalidSpec as e:
        print("\n".join(e.errors), file=sys.stderr)
        return EXIT_INVALID
    if not documents:
        print(f"{label}: no AgentDeployment found", file=sys.stderr)
        return EXIT_INVALID
    for index, document in enumerate(documents):
        where = label if len(documents) == 1 else f"{label}[{index}]"
        if not isinstance(document, dict):
            errors.append(f"{where}: <root>: must be a mapping")
            continue
        try:
            children += render_manifest(document, options, args.namespace)
        except InvalidSpec as e:
            errors += [f"{where}: {line}" for line in e.errors]
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return EXIT_INVALID
    if args.output == "json":
        sys.stdout.write(json.dumps(children, indent=2) + "\n")
    else:
        sys.stdout.write(to_yaml(children))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
