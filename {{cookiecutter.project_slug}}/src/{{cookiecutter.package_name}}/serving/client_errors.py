"""A request the server answers 4xx is logged as one INFO line, not as the server's ERROR.

BentoML (1.4) logs every request it refuses, a body that fails the schema included, with
``logger.error(..., exc_info=True)``: a traceback per bad request, carrying a slice of the
request's values (``input_value=...``) into the server's log. A client's bad request is not the
server's error, and its values may be personal data. :func:`install` adds a filter to that
logger which turns such a record into ``<status> on <path> [<method>]: <error type>`` at INFO;
errors of the server itself (a 5xx) keep their level and traceback.
"""

from __future__ import annotations

import logging

BENTOML_LOGGER = "bentoml._internal.server.http_app"


def client_status(exc: BaseException | None) -> int | None:
    """The 4xx status BentoML answers ``exc`` with, else None."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return 400
    code = getattr(getattr(exc, "error_code", None), "value", None)
    if isinstance(code, int) and 400 <= code < 500:
        return code
    return None


class ClientErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        status = client_status(exc)
        if status is None:
            return True
        path, method = (list(record.args) + ["?", "?"])[:2] if record.args else ("?", "?")
        record.msg = "%s on %s [%s]: %s"
        record.args = (status, path, method, type(exc).__name__)
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info = record.exc_text = None
        return True


def install() -> None:
    """Filter BentoML's request error log (once per process)."""
    logger = logging.getLogger(BENTOML_LOGGER)
    if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
        logger.addFilter(ClientErrorFilter())
