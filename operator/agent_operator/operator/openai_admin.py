"""Upstream keys minted with the OpenAI Admin API: one project service account per key.

The API (openai/openai-openapi `openapi.yaml`; openai-python 3.57
`admin.organization.projects.service_accounts`), relative to `base_url`
(`https://api.openai.com/v1`), authenticated with `Authorization: Bearer
<admin key>`, errors shaped `{"error": {"message", "type", "param", "code"}}`:

- create: `POST /organization/projects/{project}/service_accounts {"name": N}`
  answers the account (`id` "svc_acct_...") with `api_key: {"id", "value",
  ...}`. The key's value is returned here and never again.
- delete: `DELETE /organization/projects/{project}/service_accounts/{id}`.
  Deleting the account is the only way to revoke its key: the project-key
  endpoint (`DELETE .../api_keys/{key_id}`) refuses keys of service accounts.
  So one account holds exactly one key, and `key_id` is the account's id.
- list: `GET .../service_accounts?limit=100&after=ID` answers `{"object":
  "list", "data", "first_id", "last_id", "has_more"}`.

Not used: `create_service_account_only` (no key) and `POST
.../service_accounts/{id}/api_keys` (more keys per account, with `scopes`):
such keys cannot be revoked one by one. `expires_in_seconds` (1 s to 365 days)
is sent only when `key_lifetime_seconds` is set (an organization policy may
require it); the operator revokes keys itself, expiry is a backstop.

Idempotency. Names are not unique at OpenAI and create has no idempotency
key, so a create must not be repeated when it may have happened:

- list and delete are idempotent: every transient failure is retried (a
  delete that lands twice answers 404, which is success).
- create is retried only when the server cannot have acted or says it did
  not: the connection was never made; 429 (rejected before any work); or a
  408/409/5xx that carries the API's own JSON error (the application
  answered and reports failure; openai-python retries these too). A timeout,
  a dropped connection, or a proxy's 502/504 page may hide an account the
  server made (or is still making), so `issue` raises IssuerUnavailable at
  once: the caller recorded `name` before the call and lists by it to revoke
  what was made. Should a retried create succeed, any other account of the
  same name (one the failed attempt made after all) is deleted, best effort;
  this relies on the caller using each name once.

Redirects are never followed (the admin key must not go to another host).
Neither key, nor any `sk-...` text the provider quotes, ever reaches a log
line, an exception message or a repr.
"""

from __future__ import annotations

import builtins
import email.utils
import json
import logging
import re
import time
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode, urlsplit

import tenacity
import urllib3

from agent_operator.operator.credentials import IssuedKey

__all__ = ["IssuedKey", "IssuerRefused", "IssuerUnavailable", "OpenAIAdminIssuer"]

log = logging.getLogger("agent_operator.openai_admin")

PAGE_LIMIT: Final = 100  # the API's maximum page size
MAX_PAGES: Final = 1000  # 100,000 accounts: beyond that the listing is broken, not long
MAX_MESSAGE: Final = 200  # characters of the provider's error message that are quoted
MAX_BODY: Final = 4 * 1024 * 1024  # bytes; a page of 100 accounts is about 15 KiB
_RETRIED: Final = frozenset({408, 409, 429})  # and every 5xx
_KEYLIKE: Final = re.compile(r"sk-[A-Za-z0-9_*-]*")  # "Incorrect API key provided: sk-ad***5678"


class IssuerUnavailable(Exception):
    """The issuer cannot answer now (429, 5xx, timeout, connection); retry later.

    str() is a one-line reason without key material; `status` is the HTTP
    status when there was one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class IssuerRefused(Exception):
    """The issuer refused (bad admin key, unknown project, invalid request):
    waiting does not help, a change of configuration does. str() is safe."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Transient(IssuerUnavailable):
    """One failed attempt; `retry` says whether repeating the request is safe."""

    def __init__(
        self, message: str, status: int | None, *, retry: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status)
        self.retry = retry
        self.retry_after = retry_after


Method = Literal["GET", "POST", "DELETE"]


class OpenAIAdminIssuer:
    """Mints, lists and revokes keys as service accounts of one OpenAI project.

    Synchronous (urllib3) and thread-safe; every call makes at most `attempts`
    tries per request, `timeout_seconds` for connect and for each read,
    backoff with full jitter up to `backoff_max_seconds` (Retry-After is
    honoured up to that cap).
    """

    external = True  # keys live at the issuer: they must be revoked

    def __init__(
        self,
        base_url: str,
        admin_key: str,
        project_id: str,
        *,
        timeout_seconds: float = 10.0,
        attempts: int = 3,
        backoff_max_seconds: float = 5.0,
        pool: urllib3.PoolManager | None = None,
        key_lifetime_seconds: int | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(
                "base_url must be an http(s) URL without a query, like https://api.openai.com/v1"
            )
        # http.client quotes an invalid header value in its error: check it here, unquoted
        if (
            not admin_key
            or not admin_key.isascii()
            or not admin_key.isprintable()
            or " " in admin_key
        ):
            raise ValueError("the admin key is empty or holds characters a header cannot carry")
        if not project_id:
            raise ValueError("project_id is empty")
        if attempts < 1 or timeout_seconds <= 0 or backoff_max_seconds < 0:
            raise ValueError("attempts >= 1, timeout_seconds > 0, backoff_max_seconds >= 0")
        self.base_url = base_url.rstrip("/")
        self.project_id = project_id
        self.key_lifetime_seconds = key_lifetime_seconds
        self._admin_key = admin_key
        self._accounts = f"/organization/projects/{quote(project_id, safe='')}/service_accounts"
        self._timeout = urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds)
        self._attempts = attempts
        self._backoff_max = backoff_max_seconds
        self._jitter = tenacity.wait_random_exponential(
            multiplier=min(0.5, backoff_max_seconds), max=backoff_max_seconds
        )
        self._pool = pool if pool is not None else urllib3.PoolManager(num_pools=2, maxsize=4)

    def __repr__(self) -> str:
        return f"OpenAIAdminIssuer(base_url={self.base_url!r}, project_id={self.project_id!r})"

    # ------------------------------------------------------------ the issuer

    def issue(self, name: str) -> IssuedKey:
        """Create service account `name`; its key, with the account's id as key_id."""
        if not name:
            raise ValueError("a service account needs a name")
        body: dict[str, Any] = {"name": name}
        if self.key_lifetime_seconds is not None:
            body["expires_in_seconds"] = self.key_lifetime_seconds
        what = f"creating service account {name!r} in project {self.project_id}"
        account, tries = self._request("POST", self._accounts, what, body=body, idempotent=False)
        account_id = account.get("id")
        api_key = account.get("api_key")
        secret = api_key.get("value") if isinstance(api_key, dict) else None
        if not isinstance(account_id, str) or not account_id:
            raise IssuerUnavailable(
                f"{what}: the answer names no account id; if one was made, listing by name finds it"
            )
        if not isinstance(secret, str) or not secret:
            self._delete_quietly(account_id, "it came without a key")
            raise IssuerUnavailable(f"{what}: the answer carries no key")
        if tries > 1:
            self._sweep(name, keep=account_id)
        log.info("created service account %s (%s) in project %s", account_id, name, self.project_id)
        return IssuedKey(account_id, secret)

    def revoke(self, key_id: str) -> None:
        """Delete service account `key_id` (and so its key); one already gone is success."""
        if not key_id:
            raise ValueError("no service account id to revoke")
        what = f"deleting service account {key_id} in project {self.project_id}"
        try:
            self._request("DELETE", self._account(key_id), what, idempotent=True)
        except IssuerRefused as exc:
            if exc.status != 404:
                raise
            # 404 is also what an unknown project answers: tell the two apart
            self._request(
                "GET",
                self._accounts,
                f"checking project {self.project_id}",
                query={"limit": 1},
                idempotent=True,
            )
            log.info("service account %s in project %s was already gone", key_id, self.project_id)
            return
        log.info("deleted service account %s in project %s", key_id, self.project_id)

    def list(self, name_prefix: str) -> builtins.list[tuple[str, str]]:
        """(id, name) of every service account of the project whose name starts with
        `name_prefix`, in the API's order, following pages."""
        what = f"listing service accounts of project {self.project_id}"
        found: builtins.list[tuple[str, str]] = []
        after: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query: dict[str, str | int] = {"limit": PAGE_LIMIT}
            if after is not None:
                query["after"] = after
            page, _tries = self._request("GET", self._accounts, what, query=query, idempotent=True)
            data = page.get("data")
            if not isinstance(data, builtins.list):
                raise IssuerUnavailable(f"{what}: the answer is not a list")
            for item in data:
                account_id = item.get("id") if isinstance(item, dict) else None
                account_name = item.get("name") if isinstance(item, dict) else None
                if not isinstance(account_id, str) or not isinstance(account_name, str):
                    raise IssuerUnavailable(f"{what}: an entry has no id or name")
                if account_name.startswith(name_prefix):
                    found.append((account_id, account_name))
            if page.get("has_more") is not True:
                return found
            last = page.get("last_id") or (data[-1].get("id") if data else None)
            if not isinstance(last, str) or not last or last in seen:
                raise IssuerUnavailable(f"{what}: has_more without a new cursor")
            seen.add(last)
            after = last
        raise IssuerUnavailable(f"{what}: more than {MAX_PAGES} pages")

    # ------------------------------------------------------------ helpers of issue

    def _sweep(self, name: str, keep: str) -> None:
        """Delete other accounts named `name`: made by an attempt that failed after all."""
        try:
            extra = [i for i, n in self.list(name) if n == name and i != keep]
        except (IssuerUnavailable, IssuerRefused) as exc:
            log.warning("could not check for duplicates of service account %s: %s", name, exc)
            return
        for account_id in extra:
            self._delete_quietly(account_id, f"a retried create of {name!r} made it twice")

    def _delete_quietly(self, account_id: str, why: str) -> None:
        try:
            self.revoke(account_id)
        except (IssuerUnavailable, IssuerRefused) as exc:
            log.warning("could not delete service account %s (%s): %s", account_id, why, exc)
        else:
            log.warning("deleted service account %s: %s", account_id, why)

    # ------------------------------------------------------------ HTTP

    def _account(self, account_id: str) -> str:
        return f"{self._accounts}/{quote(account_id, safe='')}"

    def _request(
        self,
        method: Method,
        path: str,
        what: str,
        *,
        query: dict[str, str | int] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool,
    ) -> tuple[dict[str, Any], int]:
        """The JSON object answered, and the number of tries it took."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, _Transient) and e.retry),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            answer = retrying(self._once, method, path, what, query, body, idempotent)
        except _Transient as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            suffix = f" (after {tries} attempts)" if tries > 1 else ""
            raise IssuerUnavailable(f"{exc}{suffix}", exc.status) from None
        return answer, int(retrying.statistics.get("attempt_number", 1))

    def _once(
        self,
        method: Method,
        path: str,
        what: str,
        query: dict[str, str | int] | None,
        body: dict[str, Any] | None,
        idempotent: bool,
    ) -> dict[str, Any]:
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        headers = {
            "Authorization": f"Bearer {self._admin_key}",
            "Accept": "application/json",
            "User-Agent": "agent-operator",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._pool.request(
                method,
                url,
                body=json.dumps(body).encode() if body is not None else None,
                headers=headers,
                timeout=self._timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
            raw = _read(response)
        except urllib3.exceptions.ConnectTimeoutError as exc:
            # includes refused connections and DNS failures: no request was sent
            raise _Transient(
                f"{what}: cannot connect ({type(exc).__name__})", None, retry=True
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            maybe = "" if idempotent else "; it may have been done: list by name to find out"
            raise _Transient(f"{what}: {_describe(exc)}{maybe}", None, retry=idempotent) from None
        return self._answer(response.status, response.headers, raw, what, idempotent)

    def _answer(
        self,
        status: int,
        headers: urllib3.HTTPHeaderDict,
        raw: bytes,
        what: str,
        idempotent: bool,
    ) -> dict[str, Any]:
        if 200 <= status < 300:
            payload = _json(raw)
            if not isinstance(payload, dict):
                raise _Transient(
                    f"{what}: HTTP {status} without a JSON object", status, retry=idempotent
                )
            return payload
        if 300 <= status < 400:
            raise IssuerRefused(
                f"{what}: HTTP {status} redirect, not followed (is base_url right?)", status
            )
        quoted = self._error_message(raw)
        reason = f"{what}: HTTP {status}" + (f": {quoted}" if quoted is not None else "")
        if status in _RETRIED or status >= 500:
            safe = idempotent or status == 429 or quoted is not None
            if headers.get("x-should-retry") == "false":
                safe = False
            raise _Transient(reason, status, retry=safe, retry_after=_retry_after(headers))
        raise IssuerRefused(reason, status)

    def _error_message(self, raw: bytes) -> str | None:
        """The provider's error message, one line, trimmed, without key-like text;
        None when the body is not the API's JSON error (a proxy's page)."""
        payload = _json(raw)
        error = payload.get("error") if isinstance(payload, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if not isinstance(message, str):
            return None
        code = error.get("code") if isinstance(error, dict) else None
        text = " ".join(message.replace(self._admin_key, "<redacted>").split())
        text = _KEYLIKE.sub("sk-<redacted>", text)
        if isinstance(code, str) and code and code not in text:
            text = f"{code}: {text}"
        return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."

    def _wait(self, state: tenacity.RetryCallState) -> float:
        failed = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failed, _Transient) and failed.retry_after is not None:
            return min(failed.retry_after, self._backoff_max)
        return float(self._jitter(state))

    @staticmethod
    def _before_sleep(state: tenacity.RetryCallState) -> None:
        failed = state.outcome.exception() if state.outcome is not None else None
        seconds = state.next_action.sleep if state.next_action is not None else 0.0
        log.info("%s; retrying in %.2f s (attempt %d)", failed, seconds, state.attempt_number + 1)


def _json(raw: bytes) -> Any:
    """The decoded answer; None when it is not JSON (or nested past the recursion limit)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _read(response: urllib3.BaseHTTPResponse) -> bytes:
    """The body, at most MAX_BODY bytes (more is cut, and fails as JSON)."""
    keep = False
    try:
        raw = response.read(MAX_BODY + 1)
        keep = len(raw) <= MAX_BODY
    finally:
        if keep:
            response.release_conn()
        else:  # not read to its end: the connection cannot be reused
            response.close()
    return raw


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "no answer in time"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "TLS error"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "the connection was dropped before the answer"
    return f"request failed ({type(exc).__name__})"


def _retry_after(headers: urllib3.HTTPHeaderDict) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms` (OpenAI's), else
    Retry-After in seconds or as an HTTP-date; None when absent or unreadable."""
    for name, unit in (("retry-after-ms", 0.001), ("Retry-After", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            seconds = float(value) * unit
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                continue
        if seconds == seconds:  # not NaN
            return max(seconds, 0.0)
    return None
