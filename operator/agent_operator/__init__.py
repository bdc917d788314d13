"""agent-operator: run LLM agents on Kubernetes as reliable production services."""

__version__ = "0.1.0"
