"""The operator: kopf watches, a de-duplicating work queue and one level-triggered reconcile.

The only package of agent_operator that imports kopf or the Kubernetes client.
Pure parts (comparison, status, credentials, the queue) live in their own
modules and are unit-tested without a cluster.
"""
