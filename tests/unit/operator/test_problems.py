"""Problems the reconcile reports: conflicts, refusals by the API server, several at once."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from agent_operator.operator.kube import status_message
from agent_operator.operator.problems import (
    MAX_QUOTED,
    Problem,
    child_conflict,
    child_rejected,
    combine,
)

QUOTA = (
    'services "bot" is forbidden: exceeded quota: no-services, requested: services=1, '
    "used: services=0, limited: services=0"
)


def test_conflict_names_the_object_and_what_to_do() -> None:
    problem = child_conflict("Service", "bot")
    assert problem.reason == "ChildConflict" and problem.retry
    assert "Service bot" in problem.message
    assert "delete or rename it" in problem.message


def test_quota_is_rejected_and_retried() -> None:
    problem = child_rejected("Service", "bot", 403, QUOTA)
    assert problem is not None
    assert problem.reason == "ChildRejected" and problem.retry
    assert problem.message == f"the API server refused Service bot (403): {QUOTA}"


@pytest.mark.parametrize("status", [400, 413, 422])
def test_invalid_child_waits_for_a_spec_change(status: int) -> None:
    problem = child_rejected("Deployment", "bot", status, 'Deployment.apps "bot" is invalid')
    assert problem is not None and problem.reason == "ChildRejected" and not problem.retry


def test_etcd_size_limit_is_a_rejection_whatever_the_status() -> None:
    problem = child_rejected("ConfigMap", "bot-budget", 500, "etcdserver: request is too large")
    assert problem is not None and not problem.retry
    assert "ConfigMap bot-budget" in problem.message


def test_a_server_error_is_reported_and_retried() -> None:
    full = 'Internal error occurred: failed to allocate a serviceIP for Service "bot": range full'
    problem = child_rejected("Service", "bot", 500, full)
    assert problem is not None and problem.reason == "ChildRejected" and problem.retry
    assert problem.message.endswith("(500): " + full)


@pytest.mark.parametrize("status", [0, 404, 409, 429, 503, 504])
def test_other_failures_are_not_rejections(status: int) -> None:
    assert child_rejected("Service", "bot", status, "the server is busy") is None


def test_long_messages_are_trimmed_to_one_line() -> None:
    problem = child_rejected("Deployment", "bot", 422, "line one\n  line two " + "x" * 2000)
    assert problem is not None
    quoted = problem.message.split(": ", 1)[1]
    assert quoted.startswith("line one line two x") and quoted.endswith("...")
    assert len(quoted) == MAX_QUOTED and "\n" not in problem.message


def test_combine_keeps_the_first_reason_and_every_message() -> None:
    assert combine([]) is None
    one = child_conflict("Secret", "bot-credentials")
    assert combine([one]) == one
    two = child_conflict("Service", "bot")
    invalid = Problem("ChildRejected", "refused HPA bot", retry=False)
    both = combine([one, invalid, two])
    assert both is not None and both.reason == "ChildConflict" and both.retry
    assert both.message == f"{one.message}; ChildRejected: refused HPA bot; {two.message}"
    alone = combine([invalid, invalid])
    assert alone == invalid  # the same message once, still not retried


def test_status_message_reads_the_status_body() -> None:
    err = ApiException(status=403, reason="Forbidden")
    err.body = json.dumps({"kind": "Status", "message": QUOTA})
    assert status_message(err) == QUOTA
    bare = ApiException(status=413, reason="Request Entity Too Large")
    bare.body = "<html>not json</html>"
    assert status_message(bare) == "Request Entity Too Large"
