"""Rate limits and retries for calls to a backend (an HTTP model API or any user function).

One `RateLimiter` per backend is shared by all worker threads; `call_with_retries` wraps a single call
with the limiter and a tenacity retry loop. Exceptions are classified by duck typing (status codes,
headers, class names) so that no client library (openai, httpx, google-genai) has to be imported here.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ..errors import ConfigError

T = TypeVar("T")

# 408 timeout, 409 conflict (e.g. a lock held by another request), 429 rate limit; >= 500 server-side.
RETRYABLE_STATUS = frozenset({408, 409, 429})
# Transport failures of common clients, matched by name anywhere in the MRO so they need not be imported.
RETRYABLE_CLASS_NAMES = frozenset({
    "APITimeoutError", "APIConnectionError",  # openai / anthropic
    "TimeoutException", "NetworkError", "RemoteProtocolError",  # httpx
})
TPM_WINDOW_S = 60.0


@dataclass(frozen=True)
class BackendLimits:
    max_workers: int = 8  # concurrent calls
    rpm: float | None = None  # requests per minute
    tpm: float | None = None  # tokens per minute (input + output)
    max_attempts: int = 4  # total attempts including the first
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    timeout_s: float | None = None  # informational for clients

    def __post_init__(self) -> None:
        problems = _limit_problems(self)
        if problems:
            raise ConfigError("invalid backend limits: " + "; ".join(problems))


def _limit_problems(limits: BackendLimits) -> list[str]:
    checks = [
        (limits.max_workers >= 1, f"max_workers must be >= 1, got {limits.max_workers}"),
        (limits.rpm is None or limits.rpm > 0, f"rpm must be > 0, got {limits.rpm}"),
        (limits.tpm is None or limits.tpm > 0, f"tpm must be > 0, got {limits.tpm}"),
        (limits.max_attempts >= 1, f"max_attempts must be >= 1, got {limits.max_attempts}"),
        (limits.backoff_initial_s >= 0, f"backoff_initial_s must be >= 0, got {limits.backoff_initial_s}"),
        (limits.backoff_max_s >= 0, f"backoff_max_s must be >= 0, got {limits.backoff_max_s}"),
        (limits.timeout_s is None or limits.timeout_s > 0, f"timeout_s must be > 0, got {limits.timeout_s}"),
    ]
    return [message for ok, message in checks if not ok]


class RetryableError(Exception):
    """Raise from a call to ask for a retry, optionally after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, status_code: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status_code = status_code


# --- classifying exceptions ---------------------------------------------------------------------------------------


def is_retryable(exc: BaseException) -> bool:
    """True for transient failures: rate limits, server errors, timeouts and dropped connections."""
    if isinstance(exc, RetryableError):
        return True
    status = _status_code(exc)
    if status is not None:
        # A status decides on its own: a 400 wrapped in an OSError subclass (urllib's HTTPError) is final.
        return status in RETRYABLE_STATUS or status >= 500
    if _is_transport_error(exc):
        return True
    # urllib.error.URLError carries the socket error in `.reason`.
    reason = getattr(exc, "reason", None)
    return isinstance(reason, BaseException) and _is_transport_error(reason)


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return any(cls.__name__ in RETRYABLE_CLASS_NAMES for cls in type(exc).__mro__)


def _status_code(exc: BaseException) -> int | None:
    """The HTTP status of `exc`: `.status_code` (openai), `.response.status_code` (httpx), `.code` (genai, urllib)."""
    response = getattr(exc, "response", None)
    for candidate in (getattr(exc, "status_code", None), getattr(response, "status_code", None),
                      getattr(exc, "code", None)):
        # bool is an int; strings (gRPC status names) and out-of-range ints (exit or vendor codes) are not HTTP.
        if isinstance(candidate, int) and not isinstance(candidate, bool) and 100 <= candidate <= 599:
            return candidate
    return None


def retry_after_seconds(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait, from RetryableError or retry-after-ms / Retry-After headers."""
    if isinstance(exc, RetryableError) and exc.retry_after is not None:
        return max(0.0, exc.retry_after)
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is None:
        headers = getattr(exc, "headers", None)  # urllib.error.HTTPError
    if headers is None:
        return None
    # OpenAI sends both; the millisecond header is the more precise one.
    millis = _parse_seconds(_header(headers, "retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    value = _header(headers, "retry-after")
    seconds = _parse_seconds(value)
    return seconds if seconds is not None else _parse_http_date(value)


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive header lookup that also works for a plain dict."""
    getter = getattr(headers, "get", None)
    value = getter(name) if callable(getter) else None
    if value is not None:
        return str(value)
    items = getattr(headers, "items", None)
    for key, item in items() if callable(items) else ():
        if str(key).lower() == name:
            return str(item)
    return None


def _parse_seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _parse_http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# --- rate limiting ------------------------------------------------------------------------------------------------


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits for one backend, shared by all its worker threads.

    RPM is a token bucket refilled at rpm/60 per second whose capacity is one second's worth of requests
    (at least 1): a pool of workers may start a small burst at once, but never more than the provider sees
    as a one-second spike, so per-second enforcement on the server side is not tripped.

    TPM is a sliding 60 s window of the usage passed to `record_tokens` after each call. `acquire` checks
    that the window has room for `estimated_tokens` but does not reserve it, so workers in flight can
    overshoot by their own usage; a retried 429 then backs off. An estimate above the whole budget is
    clamped to it (it waits for an empty window instead of forever).
    """

    def __init__(self, rpm: float | None, tpm: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate = rpm / 60.0 if rpm else 0.0  # requests per second
        self._capacity = max(1.0, self._rate)
        self._tokens = self._capacity
        self._refilled_at = clock()
        self._usage: deque[tuple[float, int]] = deque()  # (recorded at, tokens), oldest first
        self._usage_total = 0

    def acquire(self, estimated_tokens: int = 0) -> float:
        """Block until a request may start; return the seconds waited."""
        start = self._clock()
        while True:
            # Decide under the lock, sleep outside it so other threads can record usage meanwhile.
            with self._lock:
                now = self._clock()
                wait = max(self._rpm_wait(now), self._tpm_wait(now, estimated_tokens))
                if wait <= 0:
                    if self.rpm:
                        self._tokens -= 1.0
                    return max(0.0, now - start)
            self._sleep(wait)

    def record_tokens(self, tokens: int) -> None:
        """Record the tokens (input + output) a finished call used."""
        if not self.tpm or tokens <= 0:
            return
        with self._lock:
            self._usage.append((self._clock(), tokens))
            self._usage_total += tokens

    def _rpm_wait(self, now: float) -> float:
        if not self.rpm:
            return 0.0
        self._tokens = min(self._capacity, self._tokens + (now - self._refilled_at) * self._rate)
        self._refilled_at = now
        # A tiny epsilon absorbs float error so a thread woken exactly on time is not sent back to sleep.
        return 0.0 if self._tokens >= 1.0 - 1e-9 else (1.0 - self._tokens) / self._rate

    def _tpm_wait(self, now: float, estimated_tokens: int) -> float:
        if not self.tpm:
            return 0.0
        while self._usage and self._usage[0][0] <= now - TPM_WINDOW_S:
            self._usage_total -= self._usage.popleft()[1]
        needed = min(float(max(0, estimated_tokens)), self.tpm)
        excess = self._usage_total + needed - self.tpm
        if excess <= 0:
            return 0.0
        # Wait until enough of the oldest usage has left the window.
        for recorded_at, tokens in self._usage:
            excess -= tokens
            if excess <= 0:
                return recorded_at + TPM_WINDOW_S - now
        return 0.0  # unreachable: the whole window covers any excess, since needed <= tpm


# --- retries ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallOutcome(Generic[T]):
    value: T
    attempts: int
    waited_s: float  # time spent in backoff and rate limiting


def call_with_retries(fn: Callable[[], T], limits: BackendLimits, limiter: RateLimiter | None = None, *,
                      sleep: Callable[[float], None] = time.sleep,
                      on_retry: Callable[[int, BaseException, float], None] | None = None,
                      estimated_tokens: int = 0) -> CallOutcome[T]:
    """Call `fn`, retrying transient failures; the last real exception propagates.

    The limiter is acquired before every attempt (a retry is a new request to the provider).
    `on_retry(attempt, exc, wait_s)` is called after failed attempt number `attempt`, before sleeping.
    """
    attempts = 0
    waited = 0.0

    def attempt() -> T:
        nonlocal attempts, waited
        if limiter is not None:
            waited += limiter.acquire(estimated_tokens)
        attempts += 1
        return fn()

    def backoff_sleep(seconds: float) -> None:
        nonlocal waited
        waited += seconds
        sleep(seconds)

    retrying = Retrying(
        sleep=backoff_sleep,
        stop=stop_after_attempt(limits.max_attempts),
        wait=_wait_strategy(limits),
        retry=retry_if_exception(is_retryable),
        before_sleep=_before_sleep(on_retry),
        reraise=True,
    )
    value = retrying(attempt)
    return CallOutcome(value=value, attempts=attempts, waited_s=waited)


def _wait_strategy(limits: BackendLimits) -> Callable[[RetryCallState], float]:
    """Retry-After when the server sent one (capped), else exponential backoff with full jitter."""
    jittered = wait_random_exponential(multiplier=limits.backoff_initial_s, max=limits.backoff_max_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        hinted = retry_after_seconds(exc) if exc is not None else None
        if hinted is not None:
            return min(hinted, limits.backoff_max_s)
        return jittered(state)

    return wait


def _before_sleep(on_retry: Callable[[int, BaseException, float], None] | None
                  ) -> Callable[[RetryCallState], None] | None:
    if on_retry is None:
        return None

    def notify(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        if exc is not None:
            on_retry(state.attempt_number, exc, wait)

    return notify
