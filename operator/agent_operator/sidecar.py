"""Facts the operator and the gateway sidecar both depend on, defined once.

Pure: the API types and builders render from these, the gateway parses and
enforces them; neither side spells them out again.
"""

from __future__ import annotations

from typing import Final

# Endpoints that cost money but whose spend the gateway cannot meter from the
# answer (or that mint keys). Refused with 403 unless the AgentDeployment lists
# the name in spec.gateway.allowUnmeteredEndpoints (flag --allow-unmetered).
# `completions` (legacy text completions) is metered once allowed.
UNMETERED_ENDPOINTS: Final = (
    "assistants-runs",
    "audio",
    "batches",
    "completions",
    "fine-tuning",
    "images",
    "realtime",
    "videos",
)
ALLOW_UNMETERED_FLAG: Final = "--allow-unmetered"

# Inbound bodies the prompt guard reads whole are refused with 413 above this.
DEFAULT_MAX_REQUEST_BODY_BYTES: Final = 4 * 1024 * 1024
MAX_REQUEST_BODY_BYTES_FLAG: Final = "--max-request-body-bytes"
