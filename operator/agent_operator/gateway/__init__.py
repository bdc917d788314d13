"""The gateway sidecar: one asyncio process guarding both doors of an agent pod."""
