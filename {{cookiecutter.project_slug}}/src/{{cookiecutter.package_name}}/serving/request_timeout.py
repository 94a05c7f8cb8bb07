"""The service's request timeout (``traffic.timeout``), with its timer cancelled once answered.

BentoML's ``TimeoutMiddleware`` (1.4) schedules a timer per request and never cancels it: each
request leaves a timer, a future and a bound method alive for the whole timeout. At 1,000
requests/s and a 30 s timeout that is ~30,000 live timers, ~150,000 objects the garbage
collector walks on every full pass: under load the worker stalls about once a second, for longer
the higher the rate. :func:`install` puts :class:`RequestTimeout` in its place (BentoML looks
the class up when it builds a worker's app, after importing the service): the same 504 after the
timeout, the timer cancelled when the response starts, and an app that fails before answering
fails at once instead of when the timer fires.
"""

from __future__ import annotations

import asyncio
import json


class RequestTimeout:
    """ASGI middleware: a 504 when no response has started within ``timeout`` seconds."""

    def __init__(self, app, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        async def send_started(message) -> None:
            _settle(started)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, send_started))
        # An app that ends without answering (it raised) releases the wait too.
        task.add_done_callback(lambda _: _settle(started))
        timer = loop.call_later(self.timeout, _time_out, started)
        try:
            await started
        except TimeoutError:
            if task.cancel():
                await _send_timeout(send, self.timeout)
                return
        finally:
            timer.cancel()
        await task


def _settle(started: asyncio.Future) -> None:
    if not started.done():
        started.set_result(None)


def _time_out(started: asyncio.Future) -> None:
    if not started.done():
        started.set_exception(TimeoutError())


async def _send_timeout(send, timeout: float) -> None:
    body = json.dumps({"error": f"Not able to process the request in {timeout} seconds"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 504, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install() -> None:
    """Make BentoML build its apps with :class:`RequestTimeout` (call before the app is built)."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = RequestTimeout
