"""The gradient-boosted estimators the contract can choose (``training.model``).

This module alone imports xgboost and lightgbm (inside functions: importing either costs
seconds). Everything that differs between them lives here, and the rest of the package asks:

- the Optuna search space and the fixed parameters (seed, threads, class balance, early
  stopping on validation logloss, at most :data:`MAX_ESTIMATORS` trees);
- the fit with early stopping and Optuna pruning on validation PR-AUC every few rounds;
- the model the bundle carries, and how the bundle saves and loads it in the library's own
  format (XGBoost UBJ, LightGBM text), never pickle;
- the pip requirement the MLflow registry records, and a single-threaded model for serving.

A bundle's ``kind`` is the estimator's name (``xgboost`` | ``lightgbm``); ``baseline`` is the
only other kind.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .forest import compile_forest

MAX_ESTIMATORS = 600
EARLY_STOPPING_ROUNDS = 30


class UnknownEstimatorError(ValueError):
    """No estimator has this name or bundle format."""


def _version(distributions: tuple[str, ...]) -> str | None:
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _import_lightgbm():
    """``lightgbm``, or one line saying what the machine lacks: its library loads the system's
    OpenMP runtime, which XGBoost and scikit-learn bring along and LightGBM does not."""
    try:
        import lightgbm
    except OSError as exc:
        raise RuntimeError(
            f"training.model: lightgbm cannot load ({exc}); install the OpenMP runtime "
            "(Debian/Ubuntu: apt-get install libgomp1; macOS: brew install libomp)"
        ) from exc
    return lightgbm


class Estimator:
    """What the rest of the package needs from one library. Subclasses fill every method."""

    name: str = ""
    model_file: str = ""  # in the bundle folder
    model_format: str = ""  # bundle.json's files.model.format
    requirement_name: str = ""  # the distribution the registry asks pip for
    distributions: tuple[str, ...] = ()  # installed under any of these names

    def version(self) -> str | None:
        """The installed library version, whichever distribution provides it."""
        return _version(self.distributions)

    def requirement(self) -> str | None:
        """``name==version`` for the registry, ``None`` when the library is not installed."""
        version = self.version()
        return f"{self.requirement_name}=={version}" if version else None

    def search_space(self, trial: Any) -> dict:
        """One point of the search space (Optuna ``trial.suggest_*``)."""
        raise NotImplementedError

    def fixed_params(self, *, seed: int, pos_weight: float, n_jobs: int) -> dict:
        """Constructor arguments every trial shares."""
        raise NotImplementedError

    def fit(self, params: dict, x_train, y_train, x_val, y_val, trial=None, every: int = 10):
        """Fit with early stopping on validation; with ``trial``, report validation PR-AUC every
        ``every`` rounds (step = 0-based round) and raise ``optuna.TrialPruned`` when told."""
        raise NotImplementedError

    def trees(self, model: Any) -> int:
        """Trees the fitted (or bundled) model predicts with."""
        raise NotImplementedError

    def bundled(self, model: Any) -> Any:
        """The fitted model as the bundle carries it: what :meth:`load` gives back."""
        return model

    def recorded_params(self, model: Any, tuned: dict, pos_weight: float) -> dict:
        """The bundle's ``params``: the tuned values and the fixed ones that shape the model."""
        raise NotImplementedError

    def small(self, *, trees: int, depth: int, seed: int) -> Any:
        """An unfitted single-threaded model of ``trees`` trees (samples, tests)."""
        raise NotImplementedError

    def owns(self, model: Any) -> bool:
        """Whether this library saves ``model``."""
        raise NotImplementedError

    def save(self, model: Any, path: Path) -> dict:
        """Write the model to ``path``; returns extra fields for its bundle.json entry."""
        raise NotImplementedError

    def load(self, path: Path, entry: dict) -> Any:
        """Read a model :meth:`save` wrote (``entry``: its bundle.json entry)."""
        raise NotImplementedError

    def for_serving(self, model: Any) -> Any:
        """The model as serving calls it: on the calling thread (a request is a few rows), by
        the cheapest call that gives the same probabilities."""
        return model


class XGBoost(Estimator):
    name = "xgboost"
    model_file = "model.ubj"
    model_format = "xgboost-ubj"
    # The CPU-only build: the default xgboost wheel pulls a ~300 MB CUDA library.
    requirement_name = "xgboost-cpu"
    distributions = ("xgboost", "xgboost-cpu")
    pruning_metric = "aucpr"
    # Early stopping watches the last metric. Validation logloss improves smoothly; aucpr can
    # dip for a few dozen rounds early on and would stop a slow learning rate at ~20 trees.
    eval_metrics = (pruning_metric, "logloss")
    # The scikit-learn API names the first eval_set "validation_0".
    observation_key = f"validation_0-{pruning_metric}"

    def search_space(self, trial: Any) -> dict:
        return {
            "max_depth": trial.suggest_int("max_depth", 3, 8),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 10.0),
            "subsample": trial.suggest_float("subsample", 0.6, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        }

    def fixed_params(self, *, seed: int, pos_weight: float, n_jobs: int) -> dict:
        return {
            "n_estimators": MAX_ESTIMATORS,
            "early_stopping_rounds": EARLY_STOPPING_ROUNDS,
            "eval_metric": list(self.eval_metrics),
            "objective": "binary:logistic",
            "tree_method": "hist",
            "scale_pos_weight": pos_weight,
            "n_jobs": n_jobs,
            "random_state": seed,
        }

    def fit(self, params: dict, x_train, y_train, x_val, y_val, trial=None, every: int = 10):
        from xgboost import XGBClassifier

        callbacks = [self._pruning(trial, every)] if trial is not None else None
        model = XGBClassifier(**params, callbacks=callbacks)
        model.fit(x_train, y_train, eval_set=[(x_val, y_val)], verbose=False)
        return model

    def _pruning(self, trial: Any, every: int) -> Any:
        from optuna_integration import XGBoostPruningCallback

        class EveryNRounds(XGBoostPruningCallback):
            # Each report is a database write: every few rounds, not each.
            def after_iteration(self, model, epoch, evals_log) -> bool:
                if (epoch + 1) % every:
                    return False
                return super().after_iteration(model, epoch, evals_log)

        return EveryNRounds(trial, self.observation_key)

    def trees(self, model: Any) -> int:
        return int(model.best_iteration) + 1

    def bundled(self, model: Any) -> Any:
        # Drop the trial's pruning callback. Not set_params: it would re-send every parameter
        # to the booster, and the booster rejects the eval_metric list.
        model.callbacks = None
        return model

    def recorded_params(self, model: Any, tuned: dict, pos_weight: float) -> dict:
        return {
            **tuned,
            "n_estimators": self.trees(model),
            "tree_method": "hist",
            "scale_pos_weight": pos_weight,
        }

    def small(self, *, trees: int, depth: int, seed: int) -> Any:
        from xgboost import XGBClassifier

        return XGBClassifier(
            n_estimators=trees, max_depth=depth, n_jobs=1, random_state=seed, tree_method="hist"
        )

    def owns(self, model: Any) -> bool:
        if isinstance(model, InPlaceXGBoost):
            return True
        if not type(model).__module__.startswith("xgboost"):
            return False
        from xgboost import XGBModel

        return isinstance(model, XGBModel)

    def save(self, model: Any, path: Path) -> dict:
        model.save_model(str(path))  # the suffix .ubj selects the binary JSON format
        return {"class": type(model).__name__}

    def load(self, path: Path, entry: dict) -> Any:
        import xgboost

        cls = getattr(xgboost, str(entry.get("class", "XGBClassifier")), None)
        if cls is None or not isinstance(cls, type) or not issubclass(cls, xgboost.XGBModel):
            raise UnknownEstimatorError(f"unknown XGBoost class {entry.get('class')!r}")
        model = cls()
        model.load_model(str(path))
        return model

    def for_serving(self, model: Any) -> Any:
        if isinstance(model, InPlaceXGBoost):
            return model
        model.set_params(n_jobs=1)
        binary = getattr(model, "objective", None) == "binary:logistic"
        if binary and getattr(model, "booster", None) != "gblinear":
            return InPlaceXGBoost(model)
        return model


# Rows x trees x depth up to which the compiled forest (``forest.py``) scores a call: its cost
# grows with the node steps walked, the booster's is mostly a fixed cost per call; about here
# the two meet (measured from 40 trees of depth 4 to 600 of depth 8).
COMPILED_NODE_STEPS = 12_000


class InPlaceXGBoost:
    """A fitted binary XGBoost classifier as serving calls it: its booster, in place.

    ``XGBClassifier.predict_proba`` checks and converts its input on every call, which costs
    more than one row's trees. It ends in the booster's ``inplace_predict`` with the
    classifier's iteration range (the best iteration's trees) and missing value: called with
    the same, the probabilities are the same numbers. A call of a few rows (a request) walks
    the trees compiled to arrays instead (``forest.py``; the same numbers, checked when the
    model loads), which skips the booster's fixed cost per call. Anything else goes to the
    classifier.
    """

    def __init__(self, model: Any):
        self.model = model
        self.classes_ = model.classes_
        self._booster = model.get_booster()
        try:  # as XGBModel._get_iteration_range: the best iteration when early stopping ran
            self._range = (0, int(model.best_iteration) + 1)
        except AttributeError:
            self._range = (0, 0)
        self._missing = model.missing
        # A few rows (a request) walk the compiled trees, past the booster's cost per call.
        self._forest = compile_forest(self._booster, self._range, self._missing)
        steps = len(self._forest.roots) * max(self._forest.depth, 1) if self._forest else 0
        self._forest_rows = COMPILED_NODE_STEPS // steps if steps else 0

    def predict_proba(self, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            return self.model.predict_proba(x)
        if self._compiled_fits(x):
            positive = self._forest.predict(x)
        else:
            positive = self._booster.inplace_predict(
                x, iteration_range=self._range, missing=self._missing, validate_features=False
            )
        return np.vstack((1 - positive, positive)).transpose()

    def _compiled_fits(self, x: np.ndarray) -> bool:
        return (
            0 < len(x) <= self._forest_rows
            and x.dtype == np.float32
            and x.ndim == 2
            and x.shape[1] == self._forest.features
            and not np.isinf(x).any()  # left to the booster's own handling
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


class LightGBMModel:
    """A trained LightGBM booster with the face a bundle needs (``predict_proba``,
    ``classes_``). Built from the booster's own text model, so the model trained and the model
    loaded from a bundle are the same object type and give the same scores."""

    classes_ = np.array([0, 1])

    def __init__(self, text: str, threads: int | None = None):
        lightgbm = _import_lightgbm()

        self.booster = lightgbm.Booster(model_str=text)
        self.threads = threads

    @classmethod
    def from_classifier(cls, model: Any, threads: int | None = None) -> LightGBMModel:
        """The best iteration's trees of a fitted ``LGBMClassifier`` (0/1 targets)."""
        classes = [c.item() if hasattr(c, "item") else c for c in model.classes_]
        if classes != [0, 1]:
            raise ValueError(f"LightGBM model trained on classes {classes}, expected [0, 1]")
        # model_to_string keeps the best iteration's trees when early stopping found one.
        return cls(model.booster_.model_to_string(), threads)

    @property
    def n_features_in_(self) -> int:
        return self.booster.num_feature()

    def text(self) -> str:
        return self.booster.model_to_string()

    def predict_proba(self, x: Any) -> np.ndarray:
        options = {"num_threads": self.threads} if self.threads else {}
        positive = np.asarray(self.booster.predict(x, **options), dtype=float)
        return np.column_stack([1.0 - positive, positive])


class LightGBM(Estimator):
    name = "lightgbm"
    model_file = "model.lgbm.txt"
    model_format = "lightgbm-text"
    requirement_name = "lightgbm"
    distributions = ("lightgbm",)
    pruning_metric = "average_precision"
    # Early stopping watches the first metric: logloss, for the reason XGBoost's comment gives.
    metrics = ("binary_logloss", pruning_metric)

    def search_space(self, trial: Any) -> dict:
        return {
            "num_leaves": trial.suggest_int("num_leaves", 8, 128, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
            "subsample": trial.suggest_float("subsample", 0.6, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
        }

    def fixed_params(self, *, seed: int, pos_weight: float, n_jobs: int) -> dict:
        return {
            "n_estimators": MAX_ESTIMATORS,
            "objective": "binary",
            "metric": list(self.metrics),
            "scale_pos_weight": pos_weight,
            "subsample_freq": 1,  # bag every round: without it subsample is ignored
            "n_jobs": n_jobs,
            "random_state": seed,
            # Same data and parameters, same model: a refit reproduces its trial, whatever the
            # thread count (the column-wise layout is fixed instead of timed at each fit).
            "deterministic": True,
            "force_col_wise": True,
            "verbose": -1,
        }

    def fit(self, params: dict, x_train, y_train, x_val, y_val, trial=None, every: int = 10):
        lightgbm = _import_lightgbm()

        callbacks = [
            lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)
        ]
        if trial is not None:
            from optuna_integration import LightGBMPruningCallback

            callbacks.append(
                LightGBMPruningCallback(trial, self.pruning_metric, report_interval=every)
            )
        model = lightgbm.LGBMClassifier(**params)
        model.fit(x_train, y_train, eval_X=(x_val,), eval_y=(y_val,), callbacks=callbacks)
        return model

    def trees(self, model: Any) -> int:
        if isinstance(model, LightGBMModel):
            return int(model.booster.num_trees())
        # best_iteration_ counts from 1; 0 means no early stopping happened.
        return int(model.best_iteration_ or model.n_estimators)

    def bundled(self, model: Any) -> Any:
        return model if isinstance(model, LightGBMModel) else LightGBMModel.from_classifier(model)

    def recorded_params(self, model: Any, tuned: dict, pos_weight: float) -> dict:
        return {
            **tuned,
            "n_estimators": self.trees(model),
            "subsample_freq": 1,
            "scale_pos_weight": pos_weight,
        }

    def small(self, *, trees: int, depth: int, seed: int) -> Any:
        lightgbm = _import_lightgbm()

        return lightgbm.LGBMClassifier(
            n_estimators=trees,
            max_depth=depth,
            num_leaves=2**depth,
            n_jobs=1,
            random_state=seed,
            deterministic=True,
            force_col_wise=True,
            verbose=-1,
        )

    def owns(self, model: Any) -> bool:
        if isinstance(model, LightGBMModel):
            return True
        if not type(model).__module__.startswith("lightgbm"):
            return False
        return isinstance(model, _import_lightgbm().LGBMClassifier)

    def save(self, model: Any, path: Path) -> dict:
        path.write_text(self.bundled(model).text(), encoding="utf-8")
        return {}

    def load(self, path: Path, entry: dict) -> Any:
        return LightGBMModel(path.read_text(encoding="utf-8"))

    def for_serving(self, model: Any) -> Any:
        # LightGBMModel already calls its booster directly.
        if isinstance(model, LightGBMModel):
            model.threads = 1
        elif hasattr(model, "set_params"):
            model.set_params(n_jobs=1)
        return model


ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (XGBoost(), LightGBM())}
NAMES = tuple(ESTIMATORS)
MODEL_FILES = tuple(e.model_file for e in ESTIMATORS.values())


def get(name: str) -> Estimator:
    """The estimator called ``name`` (``training.model``)."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise UnknownEstimatorError(
            f"unknown estimator {name!r}: one of {', '.join(NAMES)}"
        ) from None


def for_config(cfg: Any) -> Estimator:
    """The estimator the contract chooses."""
    return get(cfg.training.model)


def for_model(model: Any) -> Estimator | None:
    """The estimator whose library saves ``model`` natively, ``None`` for any other model."""
    return next((e for e in ESTIMATORS.values() if e.owns(model)), None)


def for_format(model_format: str) -> Estimator | None:
    """The estimator that wrote a bundle's model in ``model_format``."""
    return next((e for e in ESTIMATORS.values() if e.model_format == model_format), None)


def for_serving(model: Any) -> Any:
    """``model`` as serving calls it (:meth:`Estimator.for_serving`; any other model is
    returned as it is)."""
    estimator = for_model(model)
    return estimator.for_serving(model) if estimator else model
