"""The BentoML service: ``bentoml serve <package>.serving.service:Classifier``.

Endpoints (JSON in, JSON out):

``POST /classify``        one record (the contract's raw fields, see ``schema.record_model``)
                          -> ``Prediction``: request_id, message_id, label, score, threshold,
                          model_version, role. An ``X-Request-ID`` header becomes the request id
                          (a mesh mirror keeps it, so shadow pods join on it); else one is made.
                          An id that was already answered is a 409 naming it.
``POST /classify_batch``  a JSON list of up to ``schema.MAX_BATCH_ITEMS`` records (more: a 413
                          naming the limit) -> a list of ``Prediction``, in order; a 503 when
                          it could not start within the end-to-end budget (nothing is logged).
``GET /livez``, ``GET /readyz``, ``GET /metrics`` (BentoML's metrics and ``metrics.py``'s),
``GET /docs.json`` (the OpenAPI document, amended by ``openapi.py``).

Concurrent requests of both routes are scored together by the micro-batcher (``batcher.py``),
whole: a request is answered and logged entirely or not at all.

The contract is read at import (``SYSTEM_CONFIG`` or ``configs/system.yaml``): the request model
and the batching limits are built from it. Models load once, when the worker starts; without a
champion the worker fails with the message of ``engine.NoModelError``.
"""

from __future__ import annotations

import gc
import json
import os
from typing import Annotated

import bentoml
from _bentoml_sdk.io_models import IORootModel
from bentoml._internal.context import server_context
from pydantic import Field, TypeAdapter
from starlette.responses import Response

from ..config import load_config
from . import WORKERS_ENV
from .batcher import MicroBatcher, Overloaded
from .client_errors import install as quiet_client_errors
from .guard import RequestGuard
from .openapi import OpenAPIAmender
from .orphan import die_with_parent
from .request_timeout import install as install_request_timeout
from .schema import MAX_BATCH_ITEMS, DuplicateRequestId, Prediction, record_model

# Before BentoML builds the app: its own timeout middleware leaks a timer per request.
install_request_timeout()
# A request answered 4xx is one INFO line, not an ERROR with a traceback of its values.
quiet_client_errors()
# BentoML sets the worker index before it imports the service in a worker process.
if server_context.worker_index is not None:
    die_with_parent(os.getppid())

CFG = load_config()
Record = record_model(CFG)
RecordList = Annotated[list[Record], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]
API_PATHS = ("/classify", "/classify_batch")
SERVICE_NAME = __name__.split(".", 1)[0].replace("_", "-")
_RECORD_LIST = TypeAdapter(RecordList)
_PREDICTIONS = TypeAdapter(list[Prediction])


def _error(status: int, message: str) -> Response:
    return Response(
        json.dumps({"error": message}), status_code=status, media_type="application/json"
    )


class RecordBatch(IORootModel[RecordList]):
    """The body of /classify_batch: a JSON list of records.

    BentoML parses a list body with ``json.loads`` and answers malformed JSON with a 500;
    pydantic's JSON parser reports it as a validation error, which BentoML answers with a 400.
    """

    __root_input__ = True

    @classmethod
    def model_validate_json(cls, json_data, **kwargs):
        return cls(_RECORD_LIST.validate_json(json_data))


@bentoml.service(
    name=SERVICE_NAME,
    workers=int(os.environ.get(WORKERS_ENV, "1")),
    # /classify_batch runs on this one thread (BentoML's dispatcher sends one batch at a time);
    # /classify runs on the micro-batcher's thread (batcher.py).
    threads=1,
    traffic={"timeout": 30},
    # Per-request costs BentoML adds by default, measured at one client (bench_serve.py): its
    # OpenTelemetry middleware builds spans even with sampling off (~0.45 ms of CPU a request),
    # its access log formats a line per request (~0.15 ms). The prediction log records every
    # request, so spans (API routes) and the access log are off; BENTOML_CONFIG_OVERRIDES turns
    # them back on (DESIGN.md, Serving).
    tracing={"excluded_urls": [f"{path}$" for path in API_PATHS]},
    logging={"access": {"enabled": False}},
    endpoints={"livez": "/livez", "readyz": "/readyz"},
)
class Classifier:
    """Classifies records with the registry's champion (and challenger, by routing mode)."""

    def __init__(self) -> None:
        from .engine import Engine
        from .metrics import serving_metrics

        self.engine = Engine.from_config(CFG, metrics=serving_metrics())
        self.batcher = MicroBatcher(
            self.engine.classify_each, max_batch=CFG.serving.max_batch_size, on_shed=self._shed
        )
        # A request that waited this long has missed the client's end-to-end budget (past it
        # the caller has gone on without the answer): it is refused with a 503 before anything
        # is scored, which also bounds the queue under more load than the worker can score.
        self.deadline = (
            max(CFG.serving.batch_max_latency_ms, CFG.requirements.end_to_end_latency_ms) / 1000
        )
        # Everything loaded so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise stall requests for hundreds of ms.
        gc.collect()
        gc.freeze()

    @bentoml.api(route="/classify")
    async def classify(self, record: Record, /, ctx: bentoml.Context) -> Prediction:
        """Classify one record."""
        request_id = ctx.request.headers.get("x-request-id")
        try:
            prediction = await self.batcher.submit(record, request_id, deadline=self.deadline)
        except DuplicateRequestId as exc:
            # BentoML sets the status of a method with a context from the context.
            ctx.response.status_code = 409
            return _error(409, str(exc))
        except Overloaded as exc:
            ctx.response.status_code = 503
            return _error(503, str(exc))
        # One body with its length: BentoML would send the model as a chunked response, three
        # ASGI messages through every middleware. The schema still says ``Prediction``.
        return Response(prediction.model_dump_json(), media_type="application/json")

    @bentoml.api(route="/classify_batch", input_spec=RecordBatch)
    async def classify_batch(self, records: list[Record]) -> list[Prediction]:
        """Classify a list of records (one prediction per record, in order)."""
        try:
            predictions = await self.batcher.submit_many(records, deadline=self.deadline)
        except Overloaded as exc:
            return _error(503, str(exc))
        return Response(_PREDICTIONS.dump_json(predictions), media_type="application/json")

    def _shed(self, records: int) -> None:
        self.engine.log.record_error(records, Overloaded("waited past the deadline"))

    def __is_ready__(self) -> bool:
        return self.engine is not None

    @bentoml.on_shutdown
    def close(self) -> None:
        self.batcher.close()
        self.engine.close()


Classifier.add_asgi_middleware(
    RequestGuard, max_body_bytes=CFG.serving.max_body_bytes, paths=API_PATHS
)
Classifier.add_asgi_middleware(OpenAPIAmender, paths=API_PATHS, record=Record.__name__)
