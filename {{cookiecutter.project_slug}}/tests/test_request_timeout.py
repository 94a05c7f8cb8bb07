"""The service's request timeout: a 504 past it, and nothing left behind by answered requests."""

import asyncio
import gc
import json

import pytest

from {{cookiecutter.package_name}}.serving.request_timeout import RequestTimeout

SCOPE = {"type": "http", "path": "/classify", "method": "POST"}


async def _answer(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _call(middleware) -> list[dict]:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await middleware(dict(SCOPE), receive, send)
    return sent


def test_answered_requests_leave_no_timer_or_future_alive():
    """BentoML's own middleware kept a timer and a future per request for the whole timeout:
    under load, tens of thousands of objects the garbage collector walked on every pass."""
    middleware = RequestTimeout(_answer, timeout=30)

    async def many() -> tuple[list[list[dict]], int]:
        before = _live_futures()
        answers = [await _call(middleware) for _ in range(500)]
        gc.collect()
        return answers, _live_futures() - before

    answers, left = asyncio.run(many())
    assert all(sent[0]["status"] == 200 for sent in answers)
    assert left < 10, f"{left} futures still alive after 500 answered requests"


def test_a_request_not_answered_in_time_gets_a_504_naming_the_timeout():
    async def slow(scope, receive, send):
        await asyncio.sleep(5)

    sent = asyncio.run(_call(RequestTimeout(slow, timeout=0.05)))
    assert sent[0]["status"] == 504
    assert "0.05 seconds" in json.loads(sent[1]["body"])["error"]


def test_an_app_failing_before_it_answers_fails_at_once_not_at_the_timeout():
    async def broken(scope, receive, send):
        raise RuntimeError("scoring failed")

    async def timed():
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RuntimeError, match="scoring failed"):
            await _call(RequestTimeout(broken, timeout=30))
        return loop.time() - started

    assert asyncio.run(timed()) < 5


def test_the_service_builds_its_app_with_it():
    from bentoml._internal.server.http import traffic

    import {{cookiecutter.package_name}}.serving.service  # noqa: F401  (installs it on import)

    assert traffic.TimeoutMiddleware is RequestTimeout


def _live_futures() -> int:
    return sum(isinstance(o, asyncio.Future) for o in gc.get_objects())
