"""The `agent-operator` console script: one sub-command per job.

Each sub-command lives in its own module and parses its own arguments, so
the operator never imports the gateway's dependencies and vice versa.
"""

from __future__ import annotations

import importlib
import sys

# sub-command -> module whose `main(argv) -> int` runs it
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("agent_operator.operator.main", "run the operator (kopf)"),
    "gateway": ("agent_operator.gateway.main", "run the gateway sidecar"),
    "render": ("agent_operator.render", "print the children of a manifest, offline"),
    "crd": ("agent_operator.crd", "print the AgentDeployment CRD"),
    "healthcheck": (
        "agent_operator.healthcheck",
        "GET /healthz of this container's run/gateway process (the image's HEALTHCHECK)",
    ),
}


def usage() -> str:
    lines = ["usage: agent-operator COMMAND [args...]", "", "commands:"]
    width = max(map(len, COMMANDS))
    lines += [f"  {name:<{width}} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"agent-operator: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    result: int = module.main(rest)
    return result


if __name__ == "__main__":
    sys.exit(main())
