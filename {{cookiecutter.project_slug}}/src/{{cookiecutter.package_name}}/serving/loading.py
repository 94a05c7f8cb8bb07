"""Load the models to serve from the MLflow registry.

The answering model (role ``champion``) is ``MODEL_VERSION`` when set, else the alias
``MODEL_ALIAS`` (default ``champion``; the challenger Deployment of a mesh rollout sets
``challenger``). Shadow and canary routing add a second model, the alias ``CHALLENGER_ALIAS``
(default ``challenger``). Without a model to answer, serving fails with :class:`NoModelError`;
without a challenger it serves the champion alone and logs why.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..predlog.store import clean_number
from .routing import CHALLENGER, CHAMPION, RoutingPlan

logger = logging.getLogger(__name__)

MODEL_ALIAS_ENV = "MODEL_ALIAS"
MODEL_VERSION_ENV = "MODEL_VERSION"
CHALLENGER_ALIAS_ENV = "CHALLENGER_ALIAS"


class NoModelError(RuntimeError):
    """No model to serve: the message says how to get one."""


@dataclass
class ServedModel:
    """A loaded bundle with its registry identity and its role in this server."""

    role: str
    bundle: object
    name: str
    version: int
    alias: str

    @property
    def threshold(self) -> float:
        return float(self.bundle.threshold)

    @property
    def training_precision(self) -> float:
        """Test (else validation) precision recorded at training, NaN when unknown."""
        metrics = self.bundle.metadata.get("metrics", {})
        for split in ("test", "validation"):
            value = clean_number(metrics.get(split, {}).get("precision"))
            if value is not None:
                return value
        return float("nan")


def load_models(cfg, plan: RoutingPlan, env=None) -> tuple[ServedModel, ServedModel | None]:
    """The answering model and, when routing needs one, the challenger, from the registry."""
    from ..models import registry

    env = os.environ if env is None else env
    alias = env.get(MODEL_ALIAS_ENV) or registry.CHAMPION
    pinned = (env.get(MODEL_VERSION_ENV) or "").strip()
    name = cfg.training.mlflow.registered_model
    try:
        bundle, info = registry.load_registered_bundle(cfg, pinned or alias)
    except registry.RegistryError as exc:
        raise NoModelError(
            f"no model to serve ({exc}): '{name}' needs a version with the alias '{alias}' in "
            f"the registry at {cfg.tracking_uri}. Train and promote one first (`make train`, "
            f"or `baseline`, `tune`, `evaluate`, `promote`), or pin one with {MODEL_VERSION_ENV}."
        ) from exc
    champion = ServedModel(CHAMPION, _one_thread(bundle), name, info.version, pinned or alias)
    if not plan.needs_challenger:
        return champion, None
    other = env.get(CHALLENGER_ALIAS_ENV) or registry.CHALLENGER
    try:
        bundle, info = registry.load_registered_bundle(cfg, other)
    except registry.NoChampionError:
        logger.warning(
            "routing is %r but '%s' has no '%s' version: serving the champion alone",
            plan.mode,
            name,
            other,
        )
        return champion, None
    if info.version == champion.version:
        logger.warning("the challenger is version %s, the champion too: no routing", info.version)
        return champion, None
    return champion, ServedModel(CHALLENGER, _one_thread(bundle), name, info.version, other)


def _one_thread(bundle):
    """Score on the calling thread by the estimator's cheapest call: a request is a few rows,
    and an OpenMP team per call costs more than it saves."""
    from ..models.estimators import for_serving

    bundle.model = for_serving(bundle.model)
    return bundle
