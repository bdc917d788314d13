"""Settings of the operator installation that shape children (not part of the spec)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PullPolicy = Literal["Always", "IfNotPresent", "Never"]


@dataclass(frozen=True)
class BuildOptions:
    """Installation-wide inputs of the builders (from the operator's flags or Helm values)."""

    gateway_image: str = "agent-operator:0.1.0"
    """Image of the gateway sidecar (the operator's own image)."""
    gateway_image_pull_policy: PullPolicy = "IfNotPresent"
    """imagePullPolicy of the gateway container."""
