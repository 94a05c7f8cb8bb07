"""A small self-contained serving setup for tests and the benchmarks (which put tests/ on their
path): generated records, a fitted champion and challenger, a registry, an entity store, all
inside one folder. Not part of the package: nothing here is on the request path.

``sample_project(contract, root)`` copies the contract to ``root/configs/system.yaml`` (so every
relative SQLite path of the contract resolves under ``root``), fits two small bundles of the
contract's estimator (``training.model``) on generated records with point-in-time entity history
(``features.pipeline.build_features``), registers them in ``root/mlflow.db`` as ``champion``
and ``challenger`` and materializes the entity store. Serve it with
``SYSTEM_CONFIG=root/configs/system.yaml`` and ``MLFLOW_TRACKING_URI`` unset (or set to the
returned ``cfg.tracking_uri``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from {{cookiecutter.package_name}}.config import SystemConfig, load_config


@dataclass
class SampleProject:
    """What :func:`sample_project` made."""

    cfg: SystemConfig
    config_path: Path
    records: pd.DataFrame
    champion_version: int
    challenger_version: int | None


def write_contract(contract: Path, root: Path, overrides: dict | None = None) -> Path:
    """Copy the contract into ``root/configs/`` with ``{"serving": {...}}``-style overrides."""
    target = root / "configs" / "system.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not overrides:
        shutil.copyfile(contract, target)
        return target
    raw = yaml.safe_load(Path(contract).read_text(encoding="utf-8"))
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    target.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return target


def fit_bundle(cfg, frame: pd.DataFrame, *, trees: int = 40, depth: int = 4, seed: int = 0):
    """A small bundle of the contract's estimator on the project's features (``frame`` carries
    history columns)."""
    from {{cookiecutter.package_name}}.bundle import build_bundle
    from {{cookiecutter.package_name}}.features.pipeline import build_features
    from {{cookiecutter.package_name}}.models.estimators import for_config
    from {{cookiecutter.package_name}}.reference import build_reference

    label = cfg.data.column("label").name
    y = (frame[label] == cfg.problem.positive_class).to_numpy().astype(int)
    features = build_features(cfg)
    x = features.fit_transform(frame, y)
    estimator = for_config(cfg)
    model = estimator.bundled(estimator.small(trees=trees, depth=depth, seed=seed).fit(x, y))
    names = [str(n) for n in features.get_feature_names_out()]
    bundle = build_bundle(cfg, estimator.name, features, model, frame, feature_names=names)
    bundle.metadata["metrics"] = {"test": {"precision": 0.99}}
    # In-sample (a test fixture): real bundles get theirs from validation at evaluation.
    bundle.reference = build_reference(cfg, bundle, frame, labels=y, source="training")
    return bundle


def sample_project(
    contract: Path,
    root: Path,
    *,
    rows: int = 600,
    seed: int = 7,
    challenger: bool = True,
    overrides: dict | None = None,
) -> SampleProject:
    """Build the folder described in the module docstring; returns its contract and versions."""
    from {{cookiecutter.package_name}}.bundle import save_bundle
    from {{cookiecutter.package_name}}.data.synthetic import generate
    from {{cookiecutter.package_name}}.features.history import attach_history
    from {{cookiecutter.package_name}}.features.store import EntityStore
    from {{cookiecutter.package_name}}.models import registry

    root = Path(root)
    config_path = write_contract(Path(contract), root, overrides)
    cfg = load_config(config_path)
    records = generate(cfg, rows, seed, days=14)
    frame = attach_history(cfg, records)
    client = registry.connect(cfg)
    registry.ensure_experiment(cfg, client)
    name = cfg.training.mlflow.registered_model
    versions = []
    for i, trees in enumerate((40, 15) if challenger else (40,)):
        folder = root / "bundles" / f"b{i}"
        save_bundle(fit_bundle(cfg, frame, trees=trees, depth=4 - i, seed=seed + i), folder)
        versions.append(registry.register_bundle(cfg, folder).version)
    client.set_registered_model_alias(name, registry.CHAMPION, str(versions[0]))
    if challenger:
        client.set_registered_model_alias(name, registry.CHALLENGER, str(versions[1]))
    timestamp = cfg.data.column("timestamp").name
    store = EntityStore.from_config(cfg)
    store.materialize(cfg, records, as_of=records[timestamp].max() + pd.Timedelta(seconds=1))
    store.close()
    return SampleProject(
        cfg=cfg,
        config_path=config_path,
        records=records,
        champion_version=versions[0],
        challenger_version=versions[1] if challenger else None,
    )


def request_bodies(cfg, frame: pd.DataFrame) -> list[dict]:
    """JSON bodies for /classify from canonical rows (the label and NaNs left out)."""
    label = cfg.data.column("label").name
    bodies = []
    for record in frame.drop(columns=[label], errors="ignore").to_dict("records"):
        body = {}
        for key, value in record.items():
            if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
                continue
            if isinstance(value, pd.Timestamp):
                value = value.isoformat()
            elif hasattr(value, "item"):
                value = value.item()
            body[key] = value
        bodies.append(body)
    return bodies


def required_fields(cfg) -> list[str]:
    """What every request must carry: the entity key and the non-nullable text columns; with no
    flags column to record a default, every non-nullable column but the id and the time."""
    data = cfg.data
    flagged = bool(data.columns_with("flags"))
    free = {data.column("id").name, data.column("label").name, data.timestamp}
    text = [c.name for c in data.columns_with("text") if not c.nullable]
    others = [c.name for c in data.columns if not c.nullable and c.name not in free]
    listed = [*([data.entity] if data.entity else []), *(text if flagged else others)]
    return list(dict.fromkeys(listed))


def minimal_body(cfg, entity: str = "a@b.org") -> dict:
    """The smallest valid request under this contract (defaults fill the rest)."""
    columns = {c.name: c for c in cfg.data.columns}
    body = {}
    for name in required_fields(cfg):
        column = columns[name]
        if name == cfg.data.entity:
            body[name] = entity
        elif column.allowed:
            body[name] = column.allowed[-1]
        elif column.dtype in ("int", "float"):
            low = column.min if column.min is not None else 1
            body[name] = int(low) + 1 if column.dtype == "int" else float(low) + 0.5
        elif column.dtype == "bool":
            body[name] = True
        elif column.dtype == "datetime":
            body[name] = "2024-05-01T12:00:00Z"
        else:
            body[name] = "hello"
    return body


def scaled_rows(rows: int, contract: Path | None = None) -> int:
    """``rows`` of a test written for a 20,000-row sample (the default ``DomainPack.sample_rows``),
    for this project's pack. A pack with a larger sample has rarer positives, and they come in
    fewer, larger events (a burst of fraud on one card), so a split of the same time span holds
    fewer of them: the rows grow with the square of the sample's ratio, which keeps positives
    in every split of the tests' small samples."""
    from contract_labels import CONTRACT_PATH

    from {{cookiecutter.package_name}}.domain import pack_of

    cfg = load_config(contract or CONTRACT_PATH)
    return round(rows * (pack_of(cfg).sample_rows / 20_000) ** 2)
