"""The serving core, independent of the HTTP framework: route, look up, score, log, measure.

:class:`Engine` is what the BentoML service (``service.py``) wraps; the benchmark's plain
Starlette app and the in-process tests call it the same way. Per request it:

1. turns the validated records into raw canonical rows (``schema.FrameBuilder.table``: plain
   lists, no pandas, which would cost more than scoring a record);
2. adds the entity history from the entity store, once (``EntityStore.lookup`` also records the
   send, so velocity moves on);
3. scores the rows with the model each entity is routed to (``routing.RoutingPlan``);
4. commits the answered predictions to the prediction log, then returns them: an acknowledged
   answer is always in the log. An record whose request id already has an answer (in the log or
   earlier in the call) gets ``DuplicateRequestId`` instead, and the others their answers;
   with ``serving.log_records`` the raw records go in the same commit (``predlog/records.py``);
5. in shadow mode, hands the same rows to a background thread where the challenger scores them
   and its predictions are logged under the same request ids, off the response path.

The models come from the registry through ``loading.load_models``.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from ..predlog import records as raw_records
from ..predlog.store import URL_ENV, PredictionLog, log_url
from ..tables import RecordTable
from .loading import ServedModel, load_models
from .logrows import LogContext, LogRows
from .metrics import SCORE_FEATURE, DriftWindow
from .routing import CHALLENGER, CHAMPION, RoutingPlan, plan_from
from .schema import DuplicateRequestId, FrameBuilder, Prediction

logger = logging.getLogger(__name__)

STORE_URL_ENV = "ENTITY_STORE_URL"
REFRESH_ENV = "MONITOR_REFRESH_S"
# Online metrics look at the served predictions of this window.
ONLINE_WINDOW = timedelta(days=1)
# A full shadow queue is logged at most once per this many seconds (the metric counts each).
SHADOW_WARNING_INTERVAL_S = 60.0


def new_request_ids(n: int) -> list[str]:
    """``n`` fresh request ids: UUIDv7s (RFC 9562) as 32 hex characters.

    Their first 48 bits are the time in milliseconds, so ids follow arrival order and the log's
    request id indexes grow at their end: a random id (UUIDv4) put each prediction on a random
    index page, and a commit writes every page it touched (a third of a batch's log cost). The
    random bits of all ``n`` come from one read of the system's generator, not one each.
    """
    stamp = (time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | 0b10 << 62
    pool = os.urandom(10 * n)
    ids = []
    for k in range(0, 10 * n, 10):
        rand = int.from_bytes(pool[k : k + 10])  # 12 + 62 random bits used
        ids.append(f"{stamp | (rand >> 68) << 64 | rand & ((1 << 62) - 1):032x}")
    return ids


class Engine:
    """Scores records for the server. Thread-safe; call :meth:`close` when done."""

    def __init__(
        self,
        cfg,
        champion: ServedModel,
        challenger: ServedModel | None,
        *,
        plan: RoutingPlan,
        store,
        log: PredictionLog,
        metrics=None,
        shadow_queue: int = 1000,
        refresh_s: float = 60.0,
    ):
        self.cfg = cfg
        self.champion = champion
        self.challenger = challenger
        # Without a challenger, shadow and canary have nothing to route to.
        self.plan = plan if challenger is not None else RoutingPlan("single")
        self.store = store
        self.log = log
        self.metrics = metrics
        self.frames = FrameBuilder(cfg)
        self.log_records = cfg.serving.log_records
        self.entity = cfg.data.entity
        self.id_column = cfg.data.column("id").name
        self.drift = DriftWindow(champion.bundle.reference)
        self.log_rows = LogRows(cfg, champion.bundle.reference, self.plan.mode)
        self._feature_names = self.log_rows.feature_names
        self._shadow: queue.Queue | None = None
        self._shadow_skipped, self._shadow_warned_at = 0, -math.inf
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        if self.plan.shadow:
            self._shadow = queue.Queue(maxsize=shadow_queue)
            self._start(self._shadow_loop, "shadow-scorer")
        if metrics is not None:
            for model in (champion, challenger):
                if model is not None:
                    metrics.info.labels(
                        role=model.role,
                        version=str(model.version),
                        alias=model.alias,
                        kind=model.bundle.kind,
                    ).set(1)
            metrics.training_precision.set(champion.training_precision)
            metrics.set_drift(self.drift.scores())
            self._refresh_s = refresh_s
            self._start(self._refresh_loop, "monitoring-refresh")

    @classmethod
    def from_config(cls, cfg, env=None, *, metrics=None, **kwargs) -> Engine:
        """Load the models, open the entity store and the prediction log the contract names."""
        from ..features.store import EntityStore

        env = os.environ if env is None else env
        plan = plan_from(cfg, env)
        champion, challenger = load_models(cfg, plan, env)
        if challenger is not None:
            plan = RoutingPlan(plan.mode, plan.canary_percent, salt=str(challenger.version))
        # Records without an entity key have no history to look up.
        store = (
            EntityStore.from_config(cfg, env.get(STORE_URL_ENV) or None)
            if cfg.data.entity
            else None
        )
        log = PredictionLog(log_url(cfg, env.get(URL_ENV) or None))
        if REFRESH_ENV in env:
            kwargs.setdefault("refresh_s", float(env[REFRESH_ENV]))
        return cls(
            cfg, champion, challenger, plan=plan, store=store, log=log, metrics=metrics, **kwargs
        )

    def _start(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- the request path ----------------------------------------------------------------------

    def classify(
        self, records: list, request_ids: list[str] | None = None, *, started: float | None = None
    ) -> list[Prediction]:
        """Predictions for validated records (``schema.record_model``), logged before returning.

        A failure is recorded in the log's ``errors`` table (monitoring's error rate), then
        raised: the caller answers it with a 5xx. A refused record (:class:`DuplicateRequestId`)
        raises too, after the others are logged; :meth:`classify_each` returns it instead.
        """
        results = self.classify_each(records, request_ids, started=started)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def classify_each(
        self,
        records: list,
        request_ids: list[str] | None = None,
        *,
        started: float | None = None,
        record_errors: bool = True,
    ) -> list[Prediction | Exception]:
        """One prediction, or the reason it was refused, per record; answered ones are logged.

        A record whose request id is already served (in the log, or earlier in ``records``) is
        refused with :class:`DuplicateRequestId`, and nothing of it is logged or counted in its
        entity's history: feedback finds a prediction by its request id, and a client's retry
        is not another event of the entity. ``None`` in ``request_ids``: make one.
        ``record_errors``: a failure of the whole call is recorded in the ``errors`` table (off
        when the caller retries the records in parts).
        """
        if not records:
            return []
        try:
            return self._classify(records, request_ids, started)
        except Exception as exc:
            if record_errors:
                self.log.record_error(len(records), exc)
            raise

    def _classify(
        self,
        records: list,
        request_ids: list[str | None] | None,
        started: float | None,
        checked: bool = False,
    ):
        started = time.perf_counter() if started is None else started
        if request_ids is not None and not checked:
            refused = self._refused(records, request_ids)
            if refused:  # score the rest only
                keep = [i for i in range(len(records)) if i not in refused]
                out = self._classify(
                    [records[i] for i in keep], [request_ids[i] for i in keep], started, True
                )
                results: list = [None] * len(records)
                for i, result in zip(keep, out, strict=True):
                    results[i] = result
                for i, error in refused.items():
                    results[i] = error
                return results
        n = len(records)
        if request_ids is None:
            request_ids = new_request_ids(n)
        elif not all(request_ids):
            fresh = iter(new_request_ids(sum(1 for r in request_ids if not r)))
            request_ids = [r or next(fresh) for r in request_ids]
        now = datetime.now(UTC)
        frame = self.frames.table(records, now)
        rows = frame if self.store is None else self._history(frame)
        entity = self.entity  # None: the records have no entity key
        entities = [getattr(e, entity, None) if entity else None for e in records]
        # The canary cohort is sticky per entity; without one, per request.
        roles = [self.plan.answering_role(key) for key in (entities if entity else request_ids)]
        scores = np.empty(n)
        labels = np.empty(n, dtype=object)
        features = np.full((n, len(self._feature_names)), np.nan)
        for role in dict.fromkeys(roles):
            model = self.champion if role == CHAMPION else self.challenger
            index = [i for i, r in enumerate(roles) if r == role]
            subset = rows if len(index) == n else rows.take(index)
            x = model.bundle.transform(subset)
            part = model.bundle.score_transformed(x)
            scores[index] = part
            labels[index] = model.bundle.labels_for(part)
            features[index] = self.log_rows.features(model, subset, x)
        latency_ms = (time.perf_counter() - started) * 1000
        message_ids = [getattr(e, self.id_column, None) for e in records]
        context = self.log_rows.context(request_ids, message_ids, entities, rows, features, now)
        models = [self._model(role) for role in roles]
        entries = context.entries(models, scores, labels, True, latency_ms)
        raw = (
            raw_records.rows(frame, self.frames.names, request_ids, context.created)
            if self.log_records
            else None
        )
        t0 = time.perf_counter()
        reused = self.log.record(entries, raw)
        if self.metrics is not None:
            self.metrics.log_seconds.observe(time.perf_counter() - t0)
        answered = [i for i in range(n) if request_ids[i] not in reused]
        if len(answered) < n:  # only what was logged counts as answered
            rows = rows.take(answered)
            context = context.subset(answered)
            scores, labels, features = scores[answered], labels[answered], features[answered]
            roles = [roles[i] for i in answered]
        if self.metrics is not None:
            for role in dict.fromkeys(roles):
                index = [i for i, r in enumerate(roles) if r == role]
                self.metrics.record_predictions(role, labels[index], scores[index])
        self._observe_drift(features, scores, roles)
        if self._shadow is not None and answered:
            self._enqueue_shadow(rows, context, labels)
        results: list = [None] * n
        for k, i in enumerate(answered):
            model = self._model(roles[k])
            results[i] = Prediction(
                request_id=request_ids[i],
                message_id=getattr(records[i], self.id_column, None),
                label=str(labels[k]),
                score=float(scores[k]),
                threshold=float(model.bundle.threshold),
                model_version=model.version,
                role=roles[k],
            )
        for i in range(n):  # left out by the log: a reused request id
            if results[i] is None:
                results[i] = DuplicateRequestId(request_ids[i])
        return results

    def _refused(self, records: list, request_ids: list[str | None]) -> dict[int, Exception]:
        """The records whose given request id comes again in ``records`` or is already served by
        the model that would answer it, found before anything of them is scored or recorded
        as an entity's send. (The log's unique index refuses the rest at commit: a duplicate
        sent to another worker at the same moment, whose send the store then keeps.)"""
        refused: dict[int, Exception] = {}
        seen: set[str] = set()
        for i, request_id in enumerate(request_ids):
            if request_id is None:
                continue
            if request_id in seen:
                refused[i] = DuplicateRequestId(request_id)
            seen.add(request_id)
        by_model: dict[tuple[str, int], list[int]] = {}
        for i, request_id in enumerate(request_ids):
            if request_id is None or i in refused:
                continue
            key = getattr(records[i], self.entity, None) if self.entity else request_id
            model = self._model(self.plan.answering_role(key))
            by_model.setdefault((model.name, model.version), []).append(i)
        for (name, version), index in by_model.items():
            served = self.log.served_predictions([request_ids[i] for i in index], name, version)
            for i in index:
                if request_ids[i] in served:
                    refused[i] = DuplicateRequestId(request_ids[i])
        return refused

    def _model(self, role: str) -> ServedModel:
        return self.champion if role == CHAMPION else self.challenger

    def _observe_drift(self, features: np.ndarray, scores: np.ndarray, roles: list[str]) -> None:
        self.drift.observe_rows(self._feature_names, features)
        champion = [s for s, r in zip(scores, roles, strict=True) if r == CHAMPION]
        self.drift.observe(SCORE_FEATURE, champion)

    # -- shadow --------------------------------------------------------------------------------

    def _enqueue_shadow(self, rows, context: LogContext, served_labels) -> None:
        try:
            self._shadow.put_nowait((rows, context, list(served_labels), time.perf_counter()))
        except queue.Full:
            if self.metrics is not None:
                self.metrics.shadow_dropped.inc()
            # Once a minute, not once a request: under overload a line per request would flood
            # the logs at the request rate.
            self._shadow_skipped += len(rows)
            now = time.monotonic()
            if now - self._shadow_warned_at >= SHADOW_WARNING_INTERVAL_S:
                logger.warning(
                    "shadow queue full: the challenger skipped %d record(s) since the last warning",
                    self._shadow_skipped,
                )
                self._shadow_skipped, self._shadow_warned_at = 0, now

    def _shadow_loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._shadow.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._score_shadow(*job)
            except Exception:  # the answer was already given; never let the thread die
                logger.exception("shadow scoring failed")
            finally:
                self._shadow.task_done()

    def _score_shadow(self, rows, context: LogContext, served_labels, _queued: float) -> None:
        started = time.perf_counter()
        model = self.challenger
        scores = model.bundle.score(rows)
        labels = model.bundle.labels_for(scores)
        latency_ms = (time.perf_counter() - started) * 1000
        self.log.record(context.entries(model, scores, labels, False, latency_ms))
        if self.metrics is not None:
            self.metrics.record_predictions(CHALLENGER, labels, scores)
            self.metrics.record_shadow(served_labels, list(labels))

    def wait_for_shadow(self, timeout: float = 10.0) -> bool:
        """Block until queued shadow jobs are done (tests, shutdown); False on timeout."""
        if self._shadow is None:
            return True
        deadline = time.monotonic() + timeout
        while self._shadow.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- monitoring ----------------------------------------------------------------------------

    def refresh_monitoring(self) -> None:
        """Recompute the online metrics (from feedback) and the drift scores into the gauges."""
        if self.metrics is None:
            return
        problem = self.cfg.problem
        since = datetime.now(UTC) - ONLINE_WINDOW
        counts = self.log.online_counts(since, problem.positive_class, problem.negative_class)
        self.metrics.online_precision.set(counts.precision)
        self.metrics.online_fpr.set(counts.false_positive_rate)
        self.metrics.set_drift(self.drift.scores())

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self.refresh_monitoring()
            except Exception:  # a database hiccup must not stop later refreshes
                logger.exception("refreshing the monitoring gauges failed")

    def _history(self, frame: RecordTable) -> RecordTable:
        """``frame`` plus the entity history from the store (metrics count hits and misses)."""
        hits, misses = self.store.hits, self.store.misses
        rows = self.store.lookup(self.cfg, frame)
        if self.metrics is not None:
            self.metrics.record_store(
                self.store.hits - hits,
                self.store.misses - misses,
                self.store.hits,
                self.store.misses,
            )
        return rows

    def close(self, timeout: float = 5.0) -> None:
        """Finish queued shadow work, stop the threads, flush the store, close the log."""
        self.wait_for_shadow(timeout)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        if self.store is not None:
            self.store.close()
        self.log.close()
