"""Serving: the BentoML service, routing, metrics, and the traffic replay.

``service.py``   the BentoML service (``<slug> serve`` runs it)
``engine.py``    the request path without HTTP: look up, route, score, log, shadow
``loading.py``   the champion (and challenger) from the MLflow registry
``schema.py``    request and response models built from the contract
``batcher.py``   micro-batching of concurrent /classify requests
``guard.py``     4xx for malformed, oversized or mislabelled requests
``routing.py``   single / shadow / canary, sticky canary by entity hash
``traffic.py``   replay labelled records and ingest simulated feedback (``traffic``)
``metrics.py``   Prometheus metrics beyond BentoML's own

The prediction log and feedback it writes live below, in ``predlog/``.

Nothing heavy is imported here: the CLI imports submodules inside its commands.
"""

# Number of server processes (``bentoml serve`` workers); the CLI's --workers sets it.
WORKERS_ENV = "SERVING_WORKERS"
