"""Rate limiting and retries: a fake clock for timing (nothing really sleeps), real threads and a local HTTP server."""

from __future__ import annotations

import http.server
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import pytest

from dataproj.errors import DataprojError
from dataproj.runtime.limits import (
    BackendLimits,
    RateLimiter,
    RetryableError,
    call_with_retries,
    is_retryable,
    retry_after_seconds,
)


class FakeClock:
    """A monotonic clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class HTTPFailure(Exception):
    """Shaped like openai.APIStatusError / httpx.HTTPStatusError: a status and a response with headers."""

    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.response = SimpleNamespace(status_code=status_code, headers=headers or {})


def failing(errors: list[BaseException], value: Any = "ok") -> tuple[Callable[[], Any], list[int]]:
    """A call that raises the given errors in turn and then returns `value`; also returns its call log."""
    calls: list[int] = []

    def call() -> Any:
        calls.append(len(calls) + 1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return value

    return call, calls


# --- classification -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [
    RetryableError("try again"),
    TimeoutError("read timed out"),
    ConnectionResetError("reset"),
    HTTPFailure(429),
    HTTPFailure(408),
    HTTPFailure(409),
    HTTPFailure(500),
    HTTPFailure(503),
    type("APIError", (Exception,), {"code": 503})("genai-style"),
    type("APITimeoutError", (Exception,), {})("openai-style"),
    type("ReadTimeout", (type("TimeoutException", (Exception,), {}),), {})("httpx-style"),
    urllib.error.URLError(TimeoutError("timed out")),
])
def test_transient_errors_are_retryable(exc: BaseException) -> None:
    assert is_retryable(exc)


@pytest.mark.parametrize("exc", [
    HTTPFailure(400),
    HTTPFailure(401),
    HTTPFailure(404),
    ValueError("bad input"),
    KeyError("x"),
    urllib.error.HTTPError("http://x", 400, "Bad Request", {}, None),  # an OSError, but the status decides
    SystemExit(1),  # `.code` that is not an HTTP status
])
def test_permanent_errors_are_not_retryable(exc: BaseException) -> None:
    assert not is_retryable(exc)


def test_response_status_code_is_read_from_the_response() -> None:
    exc = Exception("httpx-style")
    exc.response = SimpleNamespace(status_code=502, headers={})  # type: ignore[attr-defined]
    assert is_retryable(exc)


def test_retry_after_sources() -> None:
    assert retry_after_seconds(RetryableError("x", retry_after=2.5)) == 2.5
    assert retry_after_seconds(HTTPFailure(429, {"Retry-After": "7"})) == 7.0
    assert retry_after_seconds(HTTPFailure(429, {"retry-after": "3", "retry-after-ms": "1500"})) == 1.5
    assert retry_after_seconds(HTTPFailure(429, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(HTTPFailure(500)) is None
    assert retry_after_seconds(ValueError("x")) is None
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(HTTPFailure(429, {"Retry-After": when})) == pytest.approx(30, abs=2)
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(HTTPFailure(429, {"Retry-After": past})) == 0.0


def test_invalid_limits_are_a_config_error() -> None:
    with pytest.raises(DataprojError, match="max_attempts must be >= 1"):
        BackendLimits(max_attempts=0)
    with pytest.raises(DataprojError, match="rpm must be > 0"):
        BackendLimits(rpm=0)


# --- retries ------------------------------------------------------------------------------------------------------


def test_429_honours_retry_after_exactly() -> None:
    clock = FakeClock()
    call, calls = failing([HTTPFailure(429, {"Retry-After": "2"}), HTTPFailure(429, {"Retry-After": "5"})])
    retries: list[tuple[int, float]] = []
    outcome = call_with_retries(call, BackendLimits(), sleep=clock.sleep,
                                on_retry=lambda attempt, exc, wait: retries.append((attempt, wait)))
    assert outcome.value == "ok"
    assert outcome.attempts == 3 == len(calls)
    assert clock.sleeps == [2.0, 5.0]
    assert outcome.waited_s == 7.0
    assert retries == [(1, 2.0), (2, 5.0)]


def test_retry_after_is_capped_at_backoff_max() -> None:
    clock = FakeClock()
    call, _ = failing([RetryableError("slow down", retry_after=600)])
    call_with_retries(call, BackendLimits(backoff_max_s=30), sleep=clock.sleep)
    assert clock.sleeps == [30.0]


def test_500_backs_off_exponentially_with_full_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = BackendLimits(max_attempts=6, backoff_initial_s=1.0, backoff_max_s=10.0)
    # Jitter drawn at the top of each window shows the window itself: it doubles and is capped.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    clock = FakeClock()
    call, _ = failing([HTTPFailure(500)] * 5)
    assert call_with_retries(call, limits, sleep=clock.sleep).attempts == 6
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0, 10.0]

    # With seeded jitter every wait lies inside its window, and the waits are not all the window's top.
    monkeypatch.setattr(random, "uniform", random.Random(1234).uniform)
    clock = FakeClock()
    call, _ = failing([HTTPFailure(500)] * 5)
    call_with_retries(call, limits, sleep=clock.sleep)
    windows = [1.0, 2.0, 4.0, 8.0, 10.0]
    assert all(0.0 <= wait <= window for wait, window in zip(clock.sleeps, windows, strict=True))
    assert clock.sleeps != windows


def test_timeout_is_retried() -> None:
    clock = FakeClock()
    call, _ = failing([TimeoutError("timed out")], value=42)
    outcome = call_with_retries(call, BackendLimits(backoff_initial_s=0.5), sleep=clock.sleep)
    assert (outcome.value, outcome.attempts) == (42, 2)
    assert 0.0 <= clock.sleeps[0] <= 0.5


@pytest.mark.parametrize("exc", [HTTPFailure(400), ValueError("bad prompt")])
def test_permanent_error_raises_after_one_attempt(exc: BaseException) -> None:
    clock = FakeClock()
    call, calls = failing([exc])
    with pytest.raises(type(exc)) as raised:
        call_with_retries(call, BackendLimits(), sleep=clock.sleep)
    assert raised.value is exc
    assert calls == [1]
    assert clock.sleeps == []


def test_gives_up_after_max_attempts_and_reraises_the_last_error() -> None:
    clock = FakeClock()
    errors = [HTTPFailure(503, {"Retry-After": "1"}) for _ in range(5)]
    call, calls = failing(errors)
    with pytest.raises(HTTPFailure) as raised:
        call_with_retries(call, BackendLimits(max_attempts=3), sleep=clock.sleep)
    assert raised.value is errors[2]  # the last real error, not a tenacity.RetryError
    assert calls == [1, 2, 3]
    assert clock.sleeps == [1.0, 1.0]


def test_limiter_is_acquired_before_every_attempt() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, tpm=None, clock=clock, sleep=clock.sleep)
    call, _ = failing([RetryableError("again", retry_after=0)] * 2)
    outcome = call_with_retries(call, BackendLimits(), limiter, sleep=clock.sleep)
    # rpm=60 allows one request a second: attempts start at t=0, 1, 2; the limiter's waits count as waited.
    assert outcome.attempts == 3
    assert clock.now == pytest.approx(2.0)
    assert outcome.waited_s == pytest.approx(2.0)


# --- rate limiter -------------------------------------------------------------------------------------------------


def test_rpm_spaces_requests_after_the_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, tpm=None, clock=clock, sleep=clock.sleep)  # 1/s, burst of 1
    starts = []
    for _ in range(10):
        limiter.acquire()
        starts.append(clock.now)
    assert starts == pytest.approx([float(i) for i in range(10)])  # the 10th waits 10 - burst = 9 s


def test_rpm_allows_a_one_second_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=600, tpm=None, clock=clock, sleep=clock.sleep)  # 10/s, burst of 10
    waits = [limiter.acquire() for _ in range(12)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1, 0.1])
    clock.now += 60  # an idle spell refills the bucket only up to its capacity
    assert [limiter.acquire() for _ in range(10)] == [0.0] * 10
    assert limiter.acquire() == pytest.approx(0.1)


def test_tpm_window_blocks_until_old_usage_expires() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=None, tpm=1000, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(estimated_tokens=500) == 0.0
    limiter.record_tokens(600)  # at t=0
    clock.now = 10.0
    limiter.acquire(estimated_tokens=100)
    limiter.record_tokens(300)  # at t=10: 900 in the window
    clock.now = 20.0
    # 900 used + 300 wanted > 1000: wait until the t=0 usage leaves the window at t=60.
    assert limiter.acquire(estimated_tokens=300) == pytest.approx(40.0)
    assert clock.now == pytest.approx(60.0)
    # An estimate above the whole budget waits for an empty window instead of forever.
    limiter.record_tokens(50)
    assert limiter.acquire(estimated_tokens=5000) == pytest.approx(60.0)  # until t=120, when the 50 expire


def test_no_limits_never_wait() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=None, tpm=None, clock=clock, sleep=clock.sleep)
    limiter.record_tokens(10**9)
    assert [limiter.acquire(10**6) for _ in range(100)] == [0.0] * 100
    assert clock.sleeps == []


def test_limiter_is_thread_safe() -> None:
    # 40 requests/s with a burst of 40: 60 requests from 6 threads take about 0.5 s of real time.
    limiter = RateLimiter(rpm=2400, tpm=None)
    starts: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(60 // 6):
                limiter.acquire()
                with lock:
                    starts.append(time.monotonic())
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors
    assert len(starts) == 60
    # After the burst of 40, the (40 + k)-th request may not start before k / 40 s: no thread got ahead.
    starts.sort()
    assert all(start - began >= k / 40 - 0.01 for k, start in enumerate(starts[40:], start=1))
    assert max(starts) - began < 2.0  # and nobody was starved


# --- a real HTTP server -------------------------------------------------------------------------------------------


class FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Answers 429 with Retry-After: 0 to the first two requests, then 200."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits += 1  # type: ignore[attr-defined]
        if self.server.hits <= 2:  # type: ignore[attr-defined]
            self.send_response(429)
            self.send_header("Retry-After", "0")
            body = b"slow down"
        else:
            self.send_response(200)
            body = b"hello"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass


@pytest.fixture
def flaky_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    server.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_real_http_server_429_then_200(flaky_server: str) -> None:
    def fetch() -> str:
        try:
            with urllib.request.urlopen(flaky_server, timeout=5) as response:
                return response.read().decode()
        except urllib.error.HTTPError as exc:
            raise HTTPFailure(exc.code, dict(exc.headers.items())) from exc

    retries: list[tuple[int, float]] = []
    outcome = call_with_retries(fetch, BackendLimits(backoff_initial_s=5.0),
                                on_retry=lambda attempt, exc, wait: retries.append((attempt, wait)))
    assert outcome.value == "hello"
    assert outcome.attempts == 3
    assert retries == [(1, 0.0), (2, 0.0)]  # Retry-After: 0 was honoured, not the 5 s backoff
