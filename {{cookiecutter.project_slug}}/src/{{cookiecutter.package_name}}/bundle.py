"""The self-contained model artifact: fitted features, model, threshold, metadata, references.

Training writes a bundle with :func:`save_bundle`; evaluation re-saves it with the chosen
threshold; the registry logs the folder as an MLflow model; serving and monitoring read it back
with :func:`load_bundle`. A bundle folder holds:

``bundle.json``      format version, threshold, metadata, reference distributions, library
                     versions, and for every other file its name, format and SHA-256
``model.ubj``        an XGBoost model in XGBoost's own binary JSON format (no pickle), or
``model.lgbm.txt``   a LightGBM model in LightGBM's own text format (no pickle), or
``model.joblib``     any other scikit-learn compatible model (pickle)
``features.joblib``  the fitted feature transformer (pickle); absent when the model takes raw rows

Unpickling runs code, so :func:`load_bundle` recomputes each file's SHA-256 and refuses a file
whose hash differs from ``bundle.json`` before anything is unpickled. The hashes protect against
a swapped or corrupted file, not against someone who can rewrite ``bundle.json`` too: the registry
records the SHA-256 of ``bundle.json`` as a model-version tag and checks it on download.

Trainers build a bundle with :func:`build_bundle` (standard metadata and reference
distributions); a trainer that logged its own MLflow run can store its id as
``metadata["mlflow_run_id"]`` so the registered model is attached to that run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .distributions import reference_distributions
from .models import estimators
from .tables import RecordTable

if TYPE_CHECKING:
    from .config import SystemConfig

BUNDLE_FILE = "bundle.json"
FEATURES_FILE = "features.joblib"
XGBOOST_FILE = estimators.get("xgboost").model_file
LIGHTGBM_FILE = estimators.get("lightgbm").model_file
PICKLED_MODEL_FILE = "model.joblib"
FORMAT_VERSION = 1
# Libraries whose version decides whether a saved object can be read back.
TRACKED_LIBRARIES = (
    "scikit-learn",
    *estimators.NAMES,
    "numpy",
    "pandas",
    "scipy",
    "joblib",
)


class TamperedArtifactError(RuntimeError):
    """A bundle file does not match the SHA-256 recorded when the bundle was saved."""


class BundleFormatError(ValueError):
    """A bundle folder is missing, incomplete or written by an unknown format version."""


@dataclass
class ModelBundle:
    """Everything serving needs to turn raw canonical rows into a score and a label.

    ``features`` maps the raw canonical DataFrame to the model's input (``None`` when the model
    takes raw rows itself, e.g. a scikit-learn Pipeline). ``model`` has ``predict_proba``.
    ``metadata`` holds ``kind``, ``contract_version``, ``labels`` (``{"positive": ...,
    "negative": ...}``), ``training`` (fingerprint, rows, window), ``trained_at``, ``metrics`` and
    ``feature_names``. ``reference`` is the output of :func:`reference_distributions`.
    """

    features: Any
    model: Any
    threshold: float = 0.5
    metadata: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``baseline``, or the tuned estimator's name (``xgboost``, ``lightgbm``)."""
        return str(self.metadata.get("kind", "unknown"))

    @property
    def positive_label(self) -> str:
        return str(self.metadata.get("labels", {}).get("positive", "1"))

    @property
    def negative_label(self) -> str:
        return str(self.metadata.get("labels", {}).get("negative", "0"))

    def transform(self, df: pd.DataFrame | RecordTable) -> Any:
        """The model input for raw canonical rows (the fitted features, or the rows unchanged:
        as a frame, for a model that reads raw rows itself)."""
        if self.features is not None:
            return self.features.transform(df)
        return df.to_frame() if isinstance(df, RecordTable) else df

    def score(self, df: pd.DataFrame | RecordTable) -> np.ndarray:
        """Positive-class probability for each raw canonical row."""
        return self.score_transformed(self.transform(df))

    def score_transformed(self, x: Any) -> np.ndarray:
        """Positive-class probability for an already transformed model input (see ``transform``)."""
        proba = self.model.predict_proba(x)
        return np.asarray(proba[:, _positive_column(self.model, self.positive_label)], dtype=float)

    def predict(self, df: pd.DataFrame, threshold: float | None = None) -> np.ndarray:
        """Label names for raw canonical rows: positive where the score reaches the threshold."""
        return self.labels_for(self.score(df), threshold)

    def labels_for(self, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Label names for already computed scores (so a caller can log both without rescoring)."""
        cut = self.threshold if threshold is None else threshold
        return np.where(np.asarray(scores) >= cut, self.positive_label, self.negative_label)


def _positive_column(model: Any, positive_label: str) -> int:
    # Models are trained on 0/1 targets (1 = positive class); one trained on label strings
    # has them in classes_, so look the positive label up instead of assuming column 1.
    classes = getattr(model, "classes_", None)
    if classes is None:
        return 1
    values = [c.item() if hasattr(c, "item") else c for c in classes]
    for wanted in (1, True, positive_label):
        if wanted in values:
            return values.index(wanted)
    return len(values) - 1


# ---------------------------------------------------------------------------------------------
# Fingerprints and reference distributions


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_frame(df: pd.DataFrame) -> str:
    """A stable SHA-256 of a DataFrame's content: column names and values.

    Independent of column order and row order (the same records in another order are the same
    training data) and of the index; sensitive to any changed value, added row or renamed
    column. Uses pandas' fixed-key row hash, so the value is the same across processes.
    """
    columns = sorted(df.columns, key=str)
    digest = hashlib.sha256()
    digest.update(json.dumps([str(c) for c in columns]).encode())
    digest.update(str(len(df)).encode())
    if len(df) and columns:
        rows = pd.util.hash_pandas_object(df[columns], index=False).to_numpy(dtype=np.uint64)
        digest.update(np.sort(rows).tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Save and load


def library_versions() -> dict[str, str | None]:
    """Python and the versions of the libraries a pickled bundle depends on."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        if name in estimators.ESTIMATORS:  # e.g. the CPU-only XGBoost wheel's other name
            versions[name] = estimators.get(name).version()
            continue
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _write_atomic(path: Path, write) -> None:
    # Write to a temporary name, then rename: a reader never sees half a file.
    tmp = path.with_name(f".tmp-{path.name}")  # keeps the suffix: XGBoost reads it
    write(tmp)
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    # numpy scalars, Paths and timestamps in metadata should not break saving.
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def save_bundle(bundle: ModelBundle, directory: str | Path) -> Path:
    """Write ``bundle`` to ``directory`` (created; an earlier bundle there is replaced).

    Returns the path of ``bundle.json``, which is written last, so a folder with a
    ``bundle.json`` always holds the files it lists.
    """
    import joblib

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}

    native = estimators.for_model(bundle.model)
    if native is not None:
        extra: dict = {}
        path = directory / native.model_file
        _write_atomic(path, lambda tmp: extra.update(native.save(bundle.model, tmp)))
        files["model"] = {"file": native.model_file, "format": native.model_format, **extra}
    else:
        path = directory / PICKLED_MODEL_FILE
        _write_atomic(path, lambda tmp: joblib.dump(bundle.model, tmp))
        files["model"] = {"file": PICKLED_MODEL_FILE, "format": "joblib"}
    if bundle.features is not None:
        _write_atomic(directory / FEATURES_FILE, lambda tmp: joblib.dump(bundle.features, tmp))
        files["features"] = {"file": FEATURES_FILE, "format": "joblib"}
    for entry in files.values():
        entry["sha256"] = file_sha256(directory / entry["file"])
    # Drop files an earlier save wrote that this bundle no longer has (e.g. model.joblib after
    # the model became XGBoost), so the folder holds exactly what bundle.json lists.
    listed = {entry["file"] for entry in files.values()}
    for stale in {FEATURES_FILE, PICKLED_MODEL_FILE, *estimators.MODEL_FILES} - listed:
        (directory / stale).unlink(missing_ok=True)

    manifest = {
        "format_version": FORMAT_VERSION,
        "threshold": float(bundle.threshold),
        "metadata": _jsonable(bundle.metadata),
        "reference": _jsonable(bundle.reference),
        "files": files,
        "libraries": library_versions(),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"
    target = directory / BUNDLE_FILE
    _write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return target


def _verified(directory: Path, entry: dict) -> Path:
    name = str(entry.get("file", ""))
    # A manifest naming ../something must not make us read outside the bundle.
    if not name or Path(name).name != name:
        raise BundleFormatError(f"{directory / BUNDLE_FILE}: invalid file name {name!r}")
    path = directory / name
    if not path.is_file():
        raise BundleFormatError(f"{path}: listed in {BUNDLE_FILE} but missing")
    actual = file_sha256(path)
    if actual != entry.get("sha256"):
        raise TamperedArtifactError(
            f"{path}: SHA-256 {actual[:16]}... does not match {BUNDLE_FILE} "
            f"({str(entry.get('sha256'))[:16]}...): refusing to load a modified artifact"
        )
    return path


def _warn_on_version_change(directory: Path, saved: dict) -> None:
    current = library_versions()
    changed = [
        f"{name} {saved[name]} -> {current.get(name)}"
        for name in ("scikit-learn", *estimators.NAMES)
        if saved.get(name) and current.get(name) and saved[name] != current[name]
    ]
    if changed:
        warnings.warn(
            f"{directory}: bundle saved with other library versions ({', '.join(changed)}); "
            "pickled objects may behave differently",
            stacklevel=3,
        )


def read_manifest(directory: str | Path) -> dict:
    """The parsed ``bundle.json`` of a bundle folder (nothing is unpickled)."""
    path = Path(directory) / BUNDLE_FILE
    if not path.is_file():
        raise BundleFormatError(f"{path}: no model bundle here (run training first)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleFormatError(
            f"{path}: bundle format {version!r}, this code reads format {FORMAT_VERSION}"
        )
    return manifest


def load_bundle(directory: str | Path) -> ModelBundle:
    """Read a bundle written by :func:`save_bundle`, verifying every file's SHA-256 first.

    Raises :class:`TamperedArtifactError` naming the file when a hash differs, before any file
    is unpickled; :class:`BundleFormatError` when the folder is not a complete bundle.
    """
    import joblib

    directory = Path(directory)
    manifest = read_manifest(directory)
    files = manifest.get("files", {})
    if "model" not in files:
        raise BundleFormatError(f"{directory / BUNDLE_FILE}: no model file listed")
    # Verify everything before unpickling anything.
    paths = {role: _verified(directory, entry) for role, entry in files.items()}
    _warn_on_version_change(directory, manifest.get("libraries", {}))

    model_entry = files["model"]
    native = estimators.for_format(str(model_entry.get("format")))
    if native is not None:
        try:
            model = native.load(paths["model"], model_entry)
        except estimators.UnknownEstimatorError as exc:
            raise BundleFormatError(f"{directory}: {exc}") from exc
    elif model_entry.get("format") == "joblib":
        model = joblib.load(paths["model"])
    else:
        raise BundleFormatError(f"{directory}: unknown model format {model_entry.get('format')!r}")
    features = joblib.load(paths["features"]) if "features" in paths else None
    return ModelBundle(
        features=features,
        model=model,
        threshold=float(manifest["threshold"]),
        metadata=manifest.get("metadata", {}),
        reference=manifest.get("reference", {}),
    )


def time_window(frame: pd.DataFrame, column: str) -> dict[str, str | None]:
    """First and last timestamp of ``column`` as ISO strings (``None`` for an empty frame)."""
    if column not in frame or frame[column].dropna().empty:
        return {"start": None, "end": None}
    values = pd.to_datetime(frame[column], utc=True)
    return {"start": values.min().isoformat(), "end": values.max().isoformat()}


def build_bundle(
    cfg: SystemConfig,
    kind: str,
    features: Any,
    model: Any,
    train: pd.DataFrame,
    *,
    feature_names: list[str] | None = None,
    reference_features: pd.DataFrame | None = None,
    params: dict | None = None,
    threshold: float = 0.5,
    train_scores: np.ndarray | None = None,
) -> ModelBundle:
    """Wrap a fitted ``features`` + ``model`` pair as a bundle with standard metadata.

    ``train`` is the raw canonical training frame (with labels): it gives the fingerprint, the
    data window, the positive rate and the training scores. Reference distributions cover
    ``reference_features`` when given, else the contract's numeric raw columns (which monitoring
    can recompute from logged requests without the feature code). Pass ``train_scores`` when
    already computed (else the bundle scores ``train``). Evaluation later sets the threshold
    and replaces the score reference with validation scores.
    """
    from datetime import UTC, datetime

    from . import __version__

    timestamp = cfg.data.timestamp
    label = cfg.data.column("label").name
    y = (train[label] == cfg.problem.positive_class).to_numpy() if label in train else None
    bundle = ModelBundle(features=features, model=model, threshold=threshold)
    bundle.metadata = {
        "kind": kind,
        "contract_version": cfg.contract_version,
        "problem": cfg.problem.name,
        "labels": {"positive": cfg.problem.positive_class, "negative": cfg.problem.negative_class},
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "package_version": __version__,
        "training": {
            "fingerprint": fingerprint_frame(train),
            "rows": len(train),
            "positive_rate": float(y.mean()) if y is not None and len(y) else None,
            "window": time_window(train, timestamp),
        },
        "feature_names": list(feature_names or []),
        "params": params or {},
        "metrics": {},
    }
    if reference_features is None:
        numeric = [c.name for c in cfg.data.columns_with("numeric") if c.name in train]
        reference_features = train[numeric]
    scores = bundle.score(train) if train_scores is None else train_scores
    bundle.reference = reference_distributions(reference_features, scores, y)
    bundle.reference["score_source"] = "training"
    return bundle


def bundle_digest(directory: str | Path) -> str:
    """SHA-256 of ``bundle.json``: it covers the hashes of all other files, so one value
    identifies the whole bundle (recorded in the registry and compared on download)."""
    return file_sha256(Path(directory) / BUNDLE_FILE)
