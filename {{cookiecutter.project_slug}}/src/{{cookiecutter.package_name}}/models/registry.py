"""The MLflow model registry: register bundles, gate promotion to ``champion``, roll back.

A registered version is an MLflow "models from code" pyfunc (``mlflow_model.py``) whose only
artifact is the bundle folder: nothing is cloudpickled, and ``load_registered_bundle`` gives
serving the same :class:`ModelBundle` that training saved. Aliases:

``champion``    answers traffic. Given only by :func:`promote` to a candidate that meets the
                contract on the test set, beats the baseline on the selection metric and beats
                the current champion, scored on the same test rows, by the promotion margin.
``challenger``  a candidate that meets the contract and beats the baseline but not the
                champion: shadow or canary traffic can try it.

Every champion change is appended to the registered-model tag ``champion_history`` (a JSON
list of versions; ``previous_champion`` mirrors the one before), which :func:`rollback` walks
back. Tracking: ``cfg.tracking_uri`` (``MLFLOW_TRACKING_URI`` wins), sqlite by default, with
artifacts in ``mlruns/`` next to the database whatever the working directory.
"""

from __future__ import annotations

import json
import logging
import tempfile
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ..bundle import (
    ModelBundle,
    TamperedArtifactError,
    bundle_digest,
    library_versions,
    load_bundle,
)
from ..config import SystemConfig
from .evaluate import contract_check, evaluate_scores, positives
from .tracking import connect, ensure_experiment

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
PREVIOUS_TAG = "previous_champion"
DIGEST_TAG = "bundle_sha256"
# The name of the logged model inside its run, and of the artifact holding the bundle folder.
LOGGED_MODEL_NAME = "model"
BUNDLE_ARTIFACT = "bundle"
CODE_FILE = Path(__file__).with_name("mlflow_model.py")
# The package this module belongs to, for the code file to import (never hard-coded in src/).
PACKAGE = __name__.rsplit(".", 2)[0]
# MLflow tag values are limited in length; reasons are truncated to fit.
_TAG_LIMIT = 4000


class RegistryError(RuntimeError):
    """A registry operation cannot be done; the message says why and what to do."""


class NoChampionError(RegistryError, LookupError):
    """The requested alias (usually ``champion``) points to no version yet."""


class RollbackError(RegistryError):
    """There is no earlier champion to go back to."""


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version: number, aliases and tags (metrics, fingerprint, decision)."""

    name: str
    version: int
    run_id: str | None
    source: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class Check:
    """One promotion gate: its name, whether it passed, and the numbers behind it."""

    name: str
    passed: bool
    detail: str


@dataclass
class PromotionDecision:
    """What :func:`promote` decided for a version, and every check behind it."""

    version: int
    outcome: str  # champion | challenger | rejected | already_champion
    checks: list[Check]
    metrics: dict
    baseline_metrics: dict
    previous_champion: int | None = None
    champion_metrics: dict | None = None

    @property
    def promoted(self) -> bool:
        return self.outcome == CHAMPION

    @property
    def reasons(self) -> list[str]:
        """Why the candidate did not become champion (empty when it did)."""
        return [c.detail for c in self.checks if not c.passed]

    def summary(self) -> list[str]:
        """Human-readable lines: the outcome, then each check with ok / FAIL."""
        head = {
            CHAMPION: f"version {self.version} is now '{CHAMPION}'"
            + (f" (was version {self.previous_champion})" if self.previous_champion else ""),
            CHALLENGER: f"version {self.version} is '{CHALLENGER}' "
            f"(champion stays version {self.previous_champion})",
            "rejected": f"version {self.version} is rejected",
            "already_champion": f"version {self.version} is already '{CHAMPION}'",
        }[self.outcome]
        return [head] + [
            f"{'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in self.checks
        ]

    def to_dict(self) -> dict:
        body = asdict(self)
        body["reasons"] = self.reasons
        return body


@dataclass(frozen=True)
class RollbackResult:
    """``champion`` moved from ``replaced`` back to ``version``."""

    version: int
    replaced: int


def _info(mv) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=mv.name,
        version=int(mv.version),
        run_id=mv.run_id,
        source=mv.source,
        aliases=tuple(getattr(mv, "aliases", ()) or ()),
        tags=dict(mv.tags or {}),
    )


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def _alias_version(client, name: str, alias: str) -> ModelVersionInfo | None:
    from mlflow.exceptions import MlflowException

    try:
        return _info(client.get_model_version_by_alias(name, alias))
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise


def has_champion(cfg: SystemConfig, client=None) -> bool:
    """Whether a version of the registered model holds the champion alias."""
    client = client or connect(cfg)
    return _alias_version(client, cfg.training.mlflow.registered_model, CHAMPION) is not None


def get_version(cfg: SystemConfig, alias_or_version: str | int, client=None) -> ModelVersionInfo:
    """Resolve ``"champion"``, ``"challenger"``, ``"latest"`` or a version number."""
    from mlflow.exceptions import MlflowException

    client = client or connect(cfg)
    name = cfg.training.mlflow.registered_model
    ref = str(alias_or_version)
    if ref == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise RegistryError(f"no version of '{name}' is registered yet: run `make train`")
        return _info(max(versions, key=lambda mv: int(mv.version)))
    if ref.isdigit():
        try:
            return _info(client.get_model_version(name, ref))
        except MlflowException as exc:
            if _is_missing(exc):
                raise RegistryError(f"model '{name}' has no version {ref}") from exc
            raise
    found = _alias_version(client, name, ref)
    if found is None:
        if ref == CHAMPION:
            raise NoChampionError(
                f"no model has the alias '{CHAMPION}' yet: run `make train` "
                f"(registered model '{name}' in {cfg.tracking_uri})"
            )
        raise NoChampionError(f"no version of '{name}' has the alias '{ref}'")
    return found


# ---------------------------------------------------------------------------------------------
# Register and load


def _requirements(model: Any) -> list[str]:
    """Pins for the registered model: the stack, plus the library that reads ``model``'s file
    (none for a pickled scikit-learn model)."""
    from .estimators import for_model

    versions = library_versions()
    native = for_model(model)
    pins = {
        "mlflow": _dist_version("mlflow"),
        "scikit-learn": versions.get("scikit-learn"),
        **({native.requirement_name: native.version()} if native else {}),
        "pandas": versions.get("pandas"),
        "numpy": versions.get("numpy"),
        "scipy": versions.get("scipy"),
        "joblib": versions.get("joblib"),
    }
    return [f"{name}=={version}" for name, version in pins.items() if version]


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _tag_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)[:_TAG_LIMIT]


def bundle_tags(bundle: ModelBundle, digest: str) -> dict[str, str]:
    """Model-version tags describing a bundle: kind, threshold, fingerprint, test metrics."""
    meta = bundle.metadata
    tags = {
        DIGEST_TAG: digest,
        "kind": bundle.kind,
        "threshold": _tag_value(bundle.threshold),
        "contract_version": str(meta.get("contract_version", "")),
        "training_fingerprint": str(meta.get("training", {}).get("fingerprint", "")),
        "trained_at": str(meta.get("trained_at", "")),
    }
    if "contract_met" in meta:
        tags["contract_met"] = str(meta["contract_met"]).lower()
    test = meta.get("metrics", {}).get("test", {})
    for key in ("precision", "recall", "f1", "fpr", "roc_auc", "pr_auc"):
        if test.get(key) is not None:
            tags[f"test_{key}"] = _tag_value(test[key])
    return tags


def _find_by_digest(client, name: str, digest: str) -> ModelVersionInfo | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name = '{name}' and tags.{DIGEST_TAG} = '{digest}'")
    except MlflowException as exc:
        if _is_missing(exc):
            return None
        raise
    return _info(min(found, key=lambda mv: int(mv.version))) if found else None


def register_bundle(
    cfg: SystemConfig,
    bundle_dir: Path,
    *,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> ModelVersionInfo:
    """Log ``bundle_dir`` as an MLflow pyfunc model and register it as a new version.

    Logs into ``run_id``, else the active run, else the training run recorded in the bundle
    (``metadata["mlflow_run_id"]``, when it exists in this store), else a new run of the
    contract's experiment.
    Registering the same bundle twice (same ``bundle.json`` SHA-256) returns the existing
    version instead of creating a duplicate. The version is tagged with the bundle's kind,
    threshold, training fingerprint and test metrics, plus ``tags``.
    """
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle(bundle_dir)  # refuse a tampered or incomplete bundle up front
    digest = bundle_digest(bundle_dir)
    client = connect(cfg)
    name = cfg.training.mlflow.registered_model
    existing = _find_by_digest(client, name, digest)
    if existing is not None:
        return existing

    import mlflow

    experiment_id = ensure_experiment(cfg, client)
    active = mlflow.active_run()
    if run_id is None and active is None:
        run_id = _existing_run(client, bundle.metadata.get("mlflow_run_id"))
    if active is not None and run_id in (None, active.info.run_id):
        context = nullcontext(active)  # logging into someone else's run must not end it
    elif run_id is not None:
        context = mlflow.start_run(run_id=run_id)
    else:
        context = mlflow.start_run(experiment_id=experiment_id, run_name=f"register-{bundle.kind}")
    with context, _quiet("mlflow.pyfunc"):
        # No signature: the contract, not MLflow, defines the raw rows (MLflow would log that
        # it cannot infer one from the DataFrame type hint).
        model_info = mlflow.pyfunc.log_model(
            name=LOGGED_MODEL_NAME,
            python_model=str(CODE_FILE),
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir.resolve())},
            model_config={"package": PACKAGE},
            pip_requirements=_requirements(bundle.model),
            registered_model_name=name,
            metadata={DIGEST_TAG: digest, "kind": bundle.kind},
        )
        mlflow.set_tags(
            {DIGEST_TAG: digest, "registered_version": model_info.registered_model_version}
        )
    version = str(model_info.registered_model_version)
    for key, value in {**bundle_tags(bundle, digest), **(tags or {})}.items():
        client.set_model_version_tag(name, version, key, _tag_value(value))
    return _info(client.get_model_version(name, version))


def _existing_run(client, run_id: str | None) -> str | None:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return client.get_run(str(run_id)).info.run_id
    except MlflowException:
        return None  # trained against another store (e.g. in a test): use a new run


@contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _bundle_path(model_dir: Path) -> Path:
    from mlflow.models import Model

    flavor = Model.load(str(model_dir)).flavors.get("python_function", {})
    relative = flavor.get("artifacts", {}).get(BUNDLE_ARTIFACT, {}).get("path")
    if not relative:
        raise RegistryError(
            f"{model_dir}: the registered model has no '{BUNDLE_ARTIFACT}' artifact"
        )
    return model_dir / relative


def load_registered_bundle(
    cfg: SystemConfig, alias_or_version: str | int = CHAMPION
) -> tuple[ModelBundle, ModelVersionInfo]:
    """Download a registered version (alias such as ``champion``, or a number) and load it.

    Raises :class:`NoChampionError` when the alias points to nothing, and
    :class:`TamperedArtifactError` when the downloaded ``bundle.json`` differs from the SHA-256
    recorded at registration (or a bundle file differs from ``bundle.json``).
    """
    import mlflow

    client = connect(cfg)
    info = get_version(cfg, alias_or_version, client)
    with tempfile.TemporaryDirectory(prefix="bundle-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.uri, dst_path=tmp))
        path = _bundle_path(local)
        expected = info.tags.get(DIGEST_TAG)
        actual = bundle_digest(path)
        if expected and actual != expected:
            raise TamperedArtifactError(
                f"{info.uri}: bundle.json SHA-256 {actual[:16]}... differs from the registered "
                f"{expected[:16]}...: refusing to load a modified artifact"
            )
        # load_bundle reads every file into memory, so the download can go away afterwards.
        bundle = load_bundle(path)
    return bundle, info


# ---------------------------------------------------------------------------------------------
# Promotion and rollback


def bundle_test_metrics(cfg: SystemConfig, bundle: ModelBundle, test_df: pd.DataFrame) -> dict:
    """:func:`evaluate_scores` of a bundle on labelled raw rows, at the bundle's threshold."""
    label = cfg.data.column("label").name
    if label not in test_df:
        raise ValueError(f"test rows have no {label!r} column: promotion needs labelled data")
    y = positives(cfg, test_df[label])
    return evaluate_scores(
        y,
        bundle.score(test_df),
        bundle.threshold,
        target_precision=cfg.metrics.offline.target_precision,
    )


def _history(client, name: str) -> list[int]:
    tags = client.get_registered_model(name).tags or {}
    try:
        return [int(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    except (ValueError, TypeError):
        return []


def _write_history(client, name: str, history: list[int]) -> None:
    # Keep the tag short enough for MLflow's tag limit; old entries are the least useful.
    history = history[-200:]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    if len(history) >= 2:
        client.set_registered_model_tag(name, PREVIOUS_TAG, str(history[-2]))
    elif PREVIOUS_TAG in (client.get_registered_model(name).tags or {}):
        client.delete_registered_model_tag(name, PREVIOUS_TAG)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _contract_version_check(cfg: SystemConfig, bundle: ModelBundle) -> Check:
    trained = bundle.metadata.get("contract_version")
    if trained is None or int(trained) == cfg.contract_version:
        return Check("contract_version", True, f"trained under contract version {trained}")
    return Check(
        "contract_version",
        False,
        f"trained under contract version {trained}, the contract is now version "
        f"{cfg.contract_version}: retrain",
    )


def _champion_check(
    cfg: SystemConfig,
    candidate: ModelVersionInfo,
    champion: ModelVersionInfo | None,
    value: float | None,
    test_df: pd.DataFrame,
) -> tuple[Check, dict | None]:
    """Does the candidate beat the current champion, scored now on the same rows?"""
    metric = cfg.metrics.offline.selection_metric
    margin = cfg.metrics.offline.promotion_margin
    if champion is None:
        return Check("champion", True, "no champion yet: this is the first model"), None
    if champion.version == candidate.version:
        return Check("champion", True, f"version {candidate.version} is the champion"), None
    try:
        champion_bundle, _ = load_registered_bundle(cfg, champion.version)
        champion_metrics = bundle_test_metrics(cfg, champion_bundle, test_df)
    except Exception as exc:  # the reason is reported; an operator decides what to do
        detail = f"could not score champion version {champion.version}: {exc}"
        return Check("champion", False, detail), None
    champ_value = champion_metrics.get(metric)
    if value is None or champ_value is None:
        return Check("champion", False, f"{metric} is not available for both models"), None
    beats = value >= champ_value + margin - 1e-12
    detail = (
        f"{metric} {value:.4f} {'>=' if beats else '<'} champion version {champion.version} "
        f"{champ_value:.4f} + margin {margin:g} (same {len(test_df)} test rows)"
    )
    return Check("champion", beats, detail), champion_metrics


def promote(
    cfg: SystemConfig,
    version: int | str | None,
    test_df: pd.DataFrame,
    *,
    baseline_metrics: dict,
    promote_to: str = CHAMPION,
) -> PromotionDecision:
    """Gate a registered version; give it ``champion``, ``challenger`` or nothing.

    Champion when all pass: (1) the contract on ``test_df`` at the version's threshold,
    (2) the selection metric beats ``baseline_metrics`` (the baseline's test metrics),
    (3) the selection metric beats the current champion, scored now on the same ``test_df``,
    by ``metrics.offline.promotion_margin`` (passes when there is no champion yet), and
    (4) the version was trained under the current ``contract_version``. Challenger when all but
    (3) pass; rejected otherwise. ``version=None`` takes the latest version. The outcome and
    reasons are recorded as tags on the version. ``promote_to="challenger"`` (retraining
    triggered by monitoring) caps the outcome at challenger: live traffic (shadow, canary,
    ``compare``) then decides, not the offline test alone.
    """
    if promote_to not in (CHAMPION, CHALLENGER):
        raise ValueError(f"promote_to must be {CHAMPION!r} or {CHALLENGER!r}, got {promote_to!r}")
    client = connect(cfg)
    name = cfg.training.mlflow.registered_model
    offline = cfg.metrics.offline
    metric = offline.selection_metric
    info = get_version(cfg, "latest" if version is None else version, client)
    bundle, _ = load_registered_bundle(cfg, info.version)
    metrics = bundle_test_metrics(cfg, bundle, test_df)
    value = metrics.get(metric)
    checks = []

    reasons = contract_check(cfg, metrics)
    checks.append(
        Check(
            "contract",
            not reasons,
            "; ".join(reasons)
            or f"test precision {metrics['precision']:.4f} >= {offline.target_precision:g} and "
            f"recall {metrics['recall']:.4f} >= {offline.target_recall:g} "
            f"at threshold {metrics['threshold']:.4g}",
        )
    )

    base_value = baseline_metrics.get(metric)
    if value is None or base_value is None:
        checks.append(Check("baseline", False, f"{metric} is not available for both models"))
    else:
        beats = value > base_value
        checks.append(
            Check(
                "baseline",
                beats,
                f"{metric} {value:.4f} {'>' if beats else '<='} baseline {base_value:.4f}",
            )
        )

    checks.append(_contract_version_check(cfg, bundle))
    champion = _alias_version(client, name, CHAMPION)
    champion_check, champion_metrics = _champion_check(cfg, info, champion, value, test_df)
    checks.append(champion_check)

    # Every check but the champion one is a gate: failing any of them rejects the candidate.
    gates_pass = all(c.passed for c in checks if c.name != "champion")
    if champion is not None and champion.version == info.version:
        outcome = "already_champion"  # the checks above still show how it does today
    elif gates_pass:
        outcome = CHAMPION if champion_check.passed else CHALLENGER
    else:
        outcome = "rejected"
    if outcome == CHAMPION and promote_to == CHALLENGER and champion is not None:
        outcome = CHALLENGER
        checks.append(
            Check("ceiling", True, "promote_to=challenger: live traffic decides the promotion")
        )

    decision = PromotionDecision(
        version=info.version,
        outcome=outcome,
        checks=checks,
        metrics=metrics,
        baseline_metrics=dict(baseline_metrics),
        previous_champion=champion.version if champion else None,
        champion_metrics=champion_metrics,
    )
    _apply(client, name, decision, champion)
    return decision


def _apply(client, name: str, decision: PromotionDecision, champion) -> None:
    version = str(decision.version)
    if decision.outcome == CHAMPION:
        history = _history(client, name)
        if champion is not None and (not history or history[-1] != champion.version):
            history.append(champion.version)  # a champion set by hand joins the history
        client.set_registered_model_alias(name, CHAMPION, version)
        _write_history(client, name, [*history, decision.version])
        challenger = _alias_version(client, name, CHALLENGER)
        if challenger is not None and challenger.version == decision.version:
            client.delete_registered_model_alias(name, CHALLENGER)
        if champion is not None:
            client.set_model_version_tag(name, version, PREVIOUS_TAG, str(champion.version))
    elif decision.outcome == CHALLENGER:
        client.set_registered_model_alias(name, CHALLENGER, version)
    tags = {
        "promotion_outcome": decision.outcome,
        "promotion_reasons": "; ".join(decision.reasons) or "all checks passed",
        "promotion_checked_at": _now(),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, _tag_value(value))


def rollback(cfg: SystemConfig) -> RollbackResult:
    """Move ``champion`` back to the version that held it before the current one.

    Raises :class:`NoChampionError` when there is no champion and :class:`RollbackError` when
    the current champion is the first one. Repeated rollbacks walk further back.
    """
    from mlflow.exceptions import MlflowException

    client = connect(cfg)
    name = cfg.training.mlflow.registered_model
    current = get_version(cfg, CHAMPION, client)
    history = _history(client, name)
    while history and history[-1] == current.version:
        history.pop()
    while history:
        target = history[-1]
        try:
            client.get_model_version(name, str(target))
            break
        except MlflowException:
            history.pop()  # a deleted version is skipped, not fatal
    if not history:
        raise RollbackError(
            f"nothing to roll back to: version {current.version} of '{name}' is the first "
            f"'{CHAMPION}' on record"
        )
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION, str(target))
    _write_history(client, name, history)
    client.set_model_version_tag(name, str(current.version), "rolled_back_at", _now())
    return RollbackResult(version=target, replaced=current.version)
