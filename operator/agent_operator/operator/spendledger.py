"""The operator's side of the spend ledger (agent_operator/ledger.py): I/O.

- An in-memory index of SpendRecords, fed by a watch (`observe`) and primed
  per agent by one LIST, so a reconcile that runs before the watch's first
  listing never reports a spend of 0. Reconciles run in threads: every access
  holds one lock.
- `evaluate`: the budget of an AgentDeployment from that index, the same for
  the full reconcile and the budget-only update, so the two never disagree.
- `fold`: records of pods that are gone go into their period's settled record.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes.client.exceptions import ApiException

from agent_operator import ledger
from agent_operator.api import AgentDeployment
from agent_operator.ledger import SpendRecordSpec
from agent_operator.operator import budget, metrics
from agent_operator.operator.budget import Evaluation, Held
from agent_operator.operator.kube import Kube
from agent_operator.operator.status import budget_fraction, budget_window, rfc3339

log = logging.getLogger("agent_operator.ledger")

AgentKey = tuple[str, str]  # (namespace, name) of an AgentDeployment
RECORD: Final = ledger.RECORD_KIND
# A fold pass lists the agent's records and pods: at most this often per agent.
FOLD_EVERY_SECONDS: Final = 30.0
# A record younger than this is never folded: its pod may not be listed yet.
FOLD_MIN_AGE_SECONDS: Final = 10.0
# Records of a window are deleted this long after it ended: a gateway whose clock
# lags the operator's may still read them.
ENDED_GRACE_SECONDS: Final = 60.0
_SETTLE_ATTEMPTS: Final = 5  # 409s in a row before a fold waits for the next pass


@dataclass(frozen=True)
class _Entry:
    owner: str  # uid of the AgentDeployment the record names as owner ("" when none)
    spec: SpendRecordSpec


def _owner(meta: Mapping[str, Any]) -> str:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "AgentDeployment":
            return str(ref.get("uid") or "")
    return ""


def _created(meta: Mapping[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(meta["creationTimestamp"])).timestamp()
    except (KeyError, ValueError):
        return time.time()  # unknown: as young as can be, so it waits


class SpendLedger:
    """The SpendRecords of every agent, and what the operator does with them.

    `clock` is the budget clock (epoch seconds): it decides periods and resetsAt.
    """

    def __init__(self, kube: Kube, clock: Callable[[], float] = time.time) -> None:
        self.kube = kube
        self.clock = clock
        self._lock = threading.Lock()
        self._records: dict[AgentKey, dict[str, _Entry]] = {}
        self._where: dict[tuple[str, str], AgentKey] = {}  # (namespace, record) -> agent
        self._primed: set[AgentKey] = set()
        self._priming: dict[AgentKey, set[str]] = {}  # agent -> records deleted meanwhile
        # agent -> status.budget window -> highest fraction evaluated (and announced)
        self._announced: dict[AgentKey, dict[tuple[str, str, float], float]] = {}
        self._fold_wanted: set[AgentKey] = set()
        self._folded_at: dict[AgentKey, float] = {}  # monotonic seconds

    # --- the index ------------------------------------------------------------

    def observe(self, event_type: str | None, body: Mapping[str, Any]) -> AgentKey | None:
        """Take one watch event of a SpendRecord; the agent whose total it may change."""
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace"), meta.get("name")
        if not namespace or not name:
            return None
        spec = ledger.parse_record(body)
        with self._lock:
            before = self._where.pop((namespace, name), None)
            if before is not None:
                self._records.get(before, {}).pop(name, None)
            if event_type == "DELETED":
                key = before or ((namespace, spec.agent) if spec else None)
                if key in self._priming:
                    self._priming[key].add(name)
                return key
            if spec is None:
                log.debug("ignoring SpendRecord %s/%s: its spec is not valid", namespace, name)
                return before  # forgetting it may change a total
            key = (namespace, spec.agent)
            self._records.setdefault(key, {})[name] = _Entry(_owner(meta), spec)
            self._where[(namespace, name)] = key
            if spec.pod_uid != ledger.SETTLED:  # a gateway's write (ours are settled records)
                self._fold_wanted.add(key)
            return key

    def _prime(self, key: AgentKey) -> None:
        """One LIST of the agent's records, merged under what the watch already gave."""
        with self._lock:
            if key in self._primed:
                return
            self._priming.setdefault(key, set())
        try:
            # the watch delivers anything newer than the cached list; merged below
            selector = f"{ledger.AGENT_LABEL}={key[1]}"
            items = self.kube.list_objects(RECORD, key[0], selector, cached=True)
        except BaseException:
            with self._lock:
                self._priming.pop(key, None)
            raise
        with self._lock:
            deleted = self._priming.pop(key, set())
            for body in items:
                meta = body.get("metadata") or {}
                name, spec = meta.get("name"), ledger.parse_record(body)
                if not name or spec is None or spec.agent != key[1]:
                    continue
                if (key[0], name) in self._where or name in deleted:
                    continue  # the watch's copy is as new or newer; or it is gone
                self._records.setdefault(key, {})[name] = _Entry(_owner(meta), spec)
                self._where[(key[0], name)] = key
            self._primed.add(key)

    def totals(self, namespace: str, name: str, uid: str) -> dict[str, float]:
        """USD per period key of AgentDeployment `name` (uid `uid`); blocking on its first use.

        Records owned by another AgentDeployment of that name (deleted and
        created again before garbage collection took them) do not count.
        """
        key = (namespace, name)
        self._prime(key)
        with self._lock:
            entries = tuple(self._records.get(key, {}).values())
        return ledger.totals((e.spec for e in entries if e.owner in ("", uid)), name)

    def forget(self, namespace: str, name: str) -> None:
        """Drop what is kept about a gone AgentDeployment (its records go by garbage collection)."""
        key = (namespace, name)
        with self._lock:
            self._primed.discard(key)
            self._announced.pop(key, None)
            self._fold_wanted.discard(key)
            self._folded_at.pop(key, None)
        metrics.forget_budget(namespace, name)

    # --- the budget -------------------------------------------------------------

    def evaluate(self, agd: AgentDeployment, previous: Mapping[str, Any] | None) -> Evaluation:
        """The budget of `agd` now; `previous` is its status.budget as last written.

        Sets the budget metrics. Call `remember` once its Events are posted.
        """
        spec = agd.spec.budget
        limits = spec.limits if spec is not None else []
        if spec is None or not limits:
            metrics.set_budget(agd.namespace, agd.name, {})
            return Evaluation(None)
        if spec.store != "kubernetes":
            # the spend is not in SpendRecords: reporting $0 would be a lie
            metrics.set_budget(agd.namespace, agd.name, {})
            return Evaluation(None, store=spec.store)
        totals = self.totals(agd.namespace, agd.name, agd.metadata.uid)
        with self._lock:
            announced = dict(self._announced.get((agd.namespace, agd.name), {}))
        evaluation = budget.evaluate(
            limits, spec.alert_thresholds, totals, self.clock(), previous, announced
        )
        metrics.set_budget(
            agd.namespace,
            agd.name,
            {s.period: (s.spent_usd, s.limit_usd) for s in evaluation.spends},
        )
        return evaluation

    def remember(self, namespace: str, name: str, evaluation: Evaluation) -> None:
        """Record what `evaluation` announced, so another evaluation does not announce it again."""
        if evaluation.status is None:
            return
        key, window = (namespace, name), budget_window(evaluation.status)
        now = rfc3339(datetime.fromtimestamp(self.clock(), UTC))
        with self._lock:
            seen = {w: f for w, f in self._announced.get(key, {}).items() if w[1] > now}
            seen[window] = max(seen.get(window, 0.0), budget_fraction(evaluation.status))
            self._announced[key] = seen

    # --- folding ------------------------------------------------------------------

    def fold_due_in(self, namespace: str, name: str) -> float | None:
        """Seconds until a wanted fold pass may run (None: none is wanted)."""
        key = (namespace, name)
        with self._lock:
            if key not in self._fold_wanted:
                return None
            last = self._folded_at.get(key)
        if last is None:
            return 0.0
        return max(0.0, last + FOLD_EVERY_SECONDS - time.monotonic())

    def fold(self, agd: AgentDeployment) -> float | None:
        """One fold pass when one is wanted and due; seconds until the next one is."""
        key = (agd.namespace, agd.name)
        due = self.fold_due_in(*key)
        if due is None or due > 0:
            return due
        with self._lock:
            self._fold_wanted.discard(key)  # a record written from now on wants another
            self._folded_at[key] = time.monotonic()
        try:
            plan = self._fold(agd)
        except BaseException:
            with self._lock:
                self._fold_wanted.add(key)  # the next pass tries again
            raise
        if plan.retry_in is None:
            return self.fold_due_in(*key)
        with self._lock:
            self._fold_wanted.add(key)
        return max(plan.retry_in, self.fold_due_in(*key) or 0.0)

    def _fold(self, agd: AgentDeployment) -> budget.FoldPlan:
        selector = f"{ledger.AGENT_LABEL}={agd.name}"
        # Records first, pods second: a record's pod exists before the record does,
        # so every live pod of a listed record is in the pod listing.
        records = self._held(self.kube.list_objects(RECORD, agd.namespace, selector), agd)
        pods = {
            str(p["metadata"].get("uid"))
            for p in self.kube.list_objects("Pod", agd.namespace, selector)
        }
        plan = budget.fold_plan(
            records, pods, self.clock(), time.time(), FOLD_MIN_AGE_SECONDS, ENDED_GRACE_SECONDS
        )
        present = {r.spec.pod_uid for r in records}
        for period_key, held in plan.fold.items():
            if self._settle(agd, period_key, held, present):
                self._delete(agd.namespace, held)
        self._delete(agd.namespace, plan.delete)
        return plan

    def _held(self, items: Iterable[Mapping[str, Any]], agd: AgentDeployment) -> list[Held]:
        out = []
        for body in items:
            meta = body.get("metadata") or {}
            spec = ledger.parse_record(body)
            if spec is None or spec.agent != agd.name or _owner(meta) not in ("", agd.metadata.uid):
                continue  # not valid, or not this AgentDeployment's: never touched
            out.append(
                Held(meta["name"], meta["uid"], meta["resourceVersion"], _created(meta), spec)
            )
        return out

    def _settle(
        self, agd: AgentDeployment, period_key: str, held: list[Held], present: set[str]
    ) -> bool:
        """Write the settled record with `held` folded in (replace with a resourceVersion
        precondition, again on 409); False when it could not be written."""
        name = ledger.settled_name(agd.name, period_key)
        specs = [h.spec for h in held]
        for _ in range(_SETTLE_ATTEMPTS):
            live = self.kube.get(RECORD, agd.namespace, name)
            settled = ledger.parse_record(live) if live is not None else None
            if live is not None and settled is None:
                log.warning("settled record %s/%s is not valid: not folding", agd.namespace, name)
                return False
            version = live["metadata"]["resourceVersion"] if live is not None else None
            body = ledger.record_body(
                budget.settle(settled, specs, present), agd.namespace, agd.metadata.uid, version
            )
            try:
                if live is None:
                    self.kube.create(body)
                    metrics.WRITES.labels(verb="create", kind=RECORD).inc()
                else:
                    self.kube.replace(body)
                    metrics.WRITES.labels(verb="update", kind=RECORD).inc()
            except ApiException as err:
                if err.status == 409:  # written meanwhile (or created): read it again
                    continue
                raise
            log.info("folded %d record(s) of gone pods into %s/%s", len(held), agd.namespace, name)
            return True
        return False

    def _delete(self, namespace: str, held: Iterable[Held]) -> None:
        """Delete records, each only if it is still the one listed (uid precondition)."""
        for h in held:
            try:
                self.kube.delete(RECORD, namespace, h.name, h.uid)
            except ApiException as err:
                if err.status != 409:  # 409: not the record we saw any more
                    raise
                continue
            metrics.WRITES.labels(verb="delete", kind=RECORD).inc()
