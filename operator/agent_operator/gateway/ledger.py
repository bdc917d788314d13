"""The shared spend ledger on the Kubernetes API: a SpendStore every replica shares.

Each gateway writes one SpendRecord per period for its own pod (its
cumulative spend: a rewrite is idempotent) and watches every record of its
AgentDeployment. A billed call is admitted against

    spent = this pod's spend (exact, in memory) + every other record (as last seen)

so the request path never waits on the API: writes and the watch run in
the background (`agent_operator.ledger` states the write policy,
docs/budget.md the overspend bound it gives).

Fail closed: until the first list has answered (spend made before this
process is known), and when the API has not answered for
STALE_AFTER_SECONDS, billed calls are refused (StoreUnavailable -> 503).
A gateway restarted in the same pod reads its own records back first, and
its journal (an emptyDir of its own: each charge appended before the call's
answer is finished, truncated once written), so a container restart, even a
kill -9, forgets nothing; a new pod starts a new record, and the operator
folds the records of pods that are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, cast, get_args

from agent_operator.gateway.kubeapi import Gone, KubeAPI, KubeError
from agent_operator.gateway.spend import Hold, StoreUnavailable
from agent_operator.gateway.telemetry import JsonLog, Metrics
from agent_operator.ledger import (
    AGENT_LABEL,
    FLUSH_FRACTION,
    MIN_WRITE_GAP_SECONDS,
    STALE_AFTER_SECONDS,
    SpendRecordSpec,
    parse_record,
    period_key,
    record_body,
    record_name,
    totals,
)
from agent_operator.sidecar import BudgetPeriod

PERIODS: Final = frozenset(get_args(BudgetPeriod))

WATCH_SECONDS: Final = 30  # a quiet watch still proves the API alive this often
_RETRY_MAX_SECONDS: Final = 10.0
_ERROR_LOG_EVERY_SECONDS: Final = 60.0
_CLOSE_WAIT_SECONDS: Final = 5.0
JOURNAL_FILE: Final = "unwritten"
_JOURNAL_COMPACT_BYTES: Final = 64 * 1024
_JOURNAL_MAX_BYTES: Final = 1024 * 1024


class Journal:
    """Append-only `<period key> <cumulative USD>` lines; the last line of a key wins.

    A plain write(2) per charge: in the page cache it survives the process
    (kill -9, OOM kill), which is all a container restart needs. Truncated
    when the ledger holds everything; compacted (rewritten whole, then
    renamed over) if it grows while the API is away.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / JOURNAL_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size

    def read(self) -> dict[str, float]:
        """Cumulative spend per period key as last journaled (malformed lines skipped)."""
        values: dict[str, float] = {}
        with open(self.path, "rb") as f:
            for line in f.read(_JOURNAL_MAX_BYTES).splitlines():
                key, _, text = line.decode("ascii", "replace").partition(" ")
                try:
                    value = float(text)
                except ValueError:
                    continue
                if (
                    math.isfinite(value)
                    and value >= 0
                    and len(key) <= 32
                    and key.split(":", 1)[0] in PERIODS
                ):
                    values[key] = value
        return values

    def append(self, key: str, value: float, everything: dict[str, float]) -> None:
        """Record `key`'s new total; `everything` (all totals) is what compaction keeps."""
        if self._size > _JOURNAL_COMPACT_BYTES:
            self._rewrite(everything)
            return
        self._size += os.write(self._fd, f"{key} {value!r}\n".encode())

    def truncate(self) -> None:
        os.ftruncate(self._fd, 0)
        self._size = 0

    def close(self) -> None:
        os.close(self._fd)

    def _rewrite(self, values: dict[str, float]) -> None:
        fresh = self.path.with_name(self.path.name + ".new")
        text = "".join(f"{k} {v!r}\n" for k, v in values.items()).encode()
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
        os.replace(fresh, self.path)  # atomic: the old file or the new one, never neither
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        self._size = len(text)


class KubernetesSpendStore:
    """This pod's records, written in the background; everyone's, watched."""

    def __init__(
        self,
        api: KubeAPI,
        *,
        agent: str,
        agent_uid: str,
        pod_name: str,
        pod_uid: str,
        flush_seconds: float,
        metrics: Metrics,
        log: JsonLog,
        journal: Journal | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.agent = agent
        self.agent_uid = agent_uid
        self.pod_name = pod_name
        self.pod_uid = pod_uid
        self.flush_seconds = flush_seconds
        self.metrics = metrics
        self.log = log
        self.journal = journal
        self.clock = clock
        self.selector = f"{AGENT_LABEL}={agent}"
        self._own: dict[str, float] = {}  # period key -> this pod's spend
        self._written: dict[str, float] = {}  # period key -> what our record holds
        self._versions: dict[str, str] = {}  # period key -> our record's resourceVersion
        self._records: dict[str, SpendRecordSpec] = {}  # every other record, by name
        self._others: dict[str, float] = {}  # period key -> their total
        self._delta = math.inf  # unwritten USD that triggers a write
        self._unwritten_since: float | None = None
        self._last_write = -math.inf
        self._write_failures = 0
        self._heard: float | None = None  # when the API last answered
        self._loaded = False
        self._logged: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.writes = 0  # successful record writes (bench reads it)

    # ------------------------------------------------------------ SpendStore

    @property
    def ready(self) -> bool:
        return self._loaded

    def spent(self, period_key: str) -> float:
        return self._own.get(period_key, 0.0) + self._others.get(period_key, 0.0)

    async def admit(
        self, keys: Sequence[str], limits_usd: Sequence[float], reserve_usd: float
    ) -> Hold | int:
        if not self._loaded:
            raise StoreUnavailable("the shared ledger has not been read yet")
        if self._heard is None or self.clock() - self._heard > STALE_AFTER_SECONDS:
            raise StoreUnavailable("the shared ledger has not answered for too long")
        self._delta = FLUSH_FRACTION * min(limits_usd)
        for i, (key, limit) in enumerate(zip(keys, limits_usd, strict=True)):
            if self.spent(key) >= limit:
                return i
        return Hold(tuple(keys))

    def settle(self, hold: Hold, usd: float) -> None:
        if usd <= 0 or not hold.keys:
            return
        for key in dict.fromkeys(hold.keys):  # two limits of one period share a key
            self._own[key] = value = self._own.get(key, 0.0) + usd
            if self.journal is not None:
                self.journal.append(key, value, self._own)
        if self._unwritten_since is None:
            self._unwritten_since = self.clock()

    async def start(self) -> None:
        if self.journal is not None:  # a container restart: what was not written yet
            for key, value in self.journal.read().items():
                self._own[key] = max(self._own.get(key, 0.0), value)
            if self._own:
                self._unwritten_since = self.clock()
        self._tasks = [
            asyncio.create_task(self._follow(), name="ledger-watch"),
            asyncio.create_task(self._flush_loop(), name="ledger-flush"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._loaded:  # last writes: what this pod spent must outlive it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush(), _CLOSE_WAIT_SECONDS)
        await self.api.close()
        if self.journal is not None:
            self.journal.close()

    # ------------------------------------------------------------ reading

    async def _follow(self) -> None:
        """List, then watch from the list's version; list again after any trouble."""
        pause = 1.0
        while True:
            try:
                await self._learn_owner()
                items, version = await self.api.list_records(self.selector)
                self._load(items)
                self._hear()
                pause = 1.0
                while True:
                    opened = self.clock()
                    async for kind, obj in self.api.watch_records(
                        self.selector, version, WATCH_SECONDS
                    ):
                        self._hear()
                        version = (obj.get("metadata") or {}).get("resourceVersion") or version
                        if kind != "BOOKMARK":
                            self._apply(kind, obj)
                    self._hear()  # closed by the server on time: alive
                    if self.clock() - opened < 1.0:
                        await asyncio.sleep(1.0)  # closed at once: do not spin
            except Gone:
                continue  # too old to resume: list again at once
            except Exception as exc:  # the API's trouble or a malformed answer: retry
                self._error("ledger_read_failed", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RETRY_MAX_SECONDS)

    async def _learn_owner(self) -> None:
        if not self.agent_uid:
            self.agent_uid = await self.api.agent_uid(self.agent) or ""

    def _load(self, items: list[dict[str, Any]]) -> None:
        records: dict[str, SpendRecordSpec] = {}
        for obj in items:
            spec = parse_record(obj)
            if spec is None or spec.agent != self.agent:
                continue
            if spec.pod_uid == self.pod_uid:
                if not self._loaded:  # restarted in the same pod: carry on from the record
                    key = spec.period_key
                    self._own[key] = max(self._own.get(key, 0.0), spec.spent_usd)
                    self._written[key] = spec.spent_usd
                    self._versions[key] = _version(obj)
                continue
            records[str((obj.get("metadata") or {}).get("name", ""))] = spec
        self._records = records
        self._others = totals(records.values(), self.agent)
        self._loaded = True

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name", ""))
        spec = parse_record(obj)
        if spec is None or spec.agent != self.agent:
            return
        if spec.pod_uid == self.pod_uid:
            if kind == "DELETED":  # never while we live; if it happens, write it again
                self._versions.pop(spec.period_key, None)
                self._written.pop(spec.period_key, None)
            return
        if kind == "DELETED":
            self._records.pop(name, None)
        else:
            self._records[name] = spec
        self._others = totals(self._records.values(), self.agent)

    def _hear(self) -> None:
        self._heard = self.clock()

    # ------------------------------------------------------------ writing

    async def _flush_loop(self) -> None:
        """Write when unwritten spend reaches the delta or has waited flush_seconds."""
        while True:
            await asyncio.sleep(MIN_WRITE_GAP_SECONDS)
            now = self.clock()
            if self._heard is not None:
                self.metrics.ledger_sync_age.set(now - self._heard)
            if not self._loaded or self._unwritten_since is None:
                continue
            backoff = min(2.0**self._write_failures, _RETRY_MAX_SECONDS)
            if self._write_failures and now - self._last_write < backoff:
                continue
            unwritten = max(
                (v - self._written.get(k, 0.0) for k, v in self._own.items()), default=0.0
            )
            if unwritten >= self._delta or now - self._unwritten_since >= self.flush_seconds:
                try:
                    await self._flush()
                except Exception as exc:  # a malformed answer must not end the writer
                    self._write_failures += 1
                    self._error("ledger_write_failed", exc)

    async def _flush(self) -> None:
        self._last_write = self.clock()
        failed = False
        for key, value in list(self._own.items()):
            if value > self._written.get(key, 0.0):
                failed |= not await self._write(key, value)
        self._write_failures = self._write_failures + 1 if failed else 0
        pending = any(v > self._written.get(k, 0.0) for k, v in self._own.items())
        self._unwritten_since = self.clock() if pending else None
        if not pending and self.journal is not None:
            self.journal.truncate()  # everything is in the ledger
        now = time.time()
        for key in [k for k in self._own if not _current(k, now)]:
            if self._own[key] <= self._written.get(key, 0.0):  # a past period, all written
                self._own.pop(key)
                self._written.pop(key, None)
                self._versions.pop(key, None)

    async def _write(self, key: str, value: float) -> bool:
        """Write our record of `key` holding `value`; True when the API has it."""
        spec = SpendRecordSpec(
            agent=self.agent,
            period=cast(BudgetPeriod, key.split(":", 1)[0]),
            period_key=key,
            pod_name=self.pod_name,
            pod_uid=self.pod_uid,
            spent_usd=value,
        )
        namespace = self.api.namespace
        try:
            for _ in range(3):  # a conflict costs one read and one more try
                version = self._versions.get(key)
                if version is None:
                    try:
                        answer = await self.api.create_record(
                            record_body(spec, namespace, self.agent_uid)
                        )
                    except KubeError as exc:
                        if exc.status != 409:
                            raise
                        await self._reread(key)
                        continue
                else:
                    try:
                        replaced = await self.api.replace_record(
                            record_body(spec, namespace, self.agent_uid, version)
                        )
                    except KubeError as exc:
                        if exc.status != 409:
                            raise
                        await self._reread(key)
                        continue
                    if replaced is None:  # deleted under us: create it again
                        self._versions.pop(key, None)
                        continue
                    answer = replaced
                self._versions[key] = _version(answer)
                self._written[key] = value
                self.writes += 1
                self.metrics.ledger_writes.labels("ok").inc()
                self._hear()
                return True
            raise KubeError(409, "Conflict")
        except KubeError as exc:
            self.metrics.ledger_writes.labels("error").inc()
            self._error("ledger_write_failed", exc)
            return False

    async def _reread(self, key: str) -> None:
        """Our record changed under us (a lost answer, a restart): take its version."""
        found = await self.api.get_record(record_name(self.agent, key, self.pod_uid))
        if found is None:
            self._versions.pop(key, None)
            return
        spec = parse_record(found)
        if spec is not None:  # never write less than the record holds: spend only grows
            self._own[key] = max(self._own.get(key, 0.0), spec.spent_usd)
        self._versions[key] = _version(found)

    def _error(self, event: str, exc: Exception) -> None:
        """Log at most once a minute per kind; the API's reason, never a body or a token."""
        now = self.clock()
        if now - self._logged.get(event, -math.inf) >= _ERROR_LOG_EVERY_SECONDS:
            self._logged[event] = now
            if isinstance(exc, KubeError):
                self.log.emit("error", event, status=exc.status, reason=exc.reason)
            else:
                self.log.emit("error", event, error=type(exc).__name__)


def _current(key: str, now: float) -> bool:
    """Whether `key` is the period key of its kind at `now` (wall clock)."""
    period = key.split(":", 1)[0]
    return period in PERIODS and period_key(cast(BudgetPeriod, period), now) == key


def _version(body: dict[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion", ""))
