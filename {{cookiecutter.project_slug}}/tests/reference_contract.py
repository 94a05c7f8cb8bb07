"""A fixed raw schema for the core's unit tests, whatever this project's use case.

Validation, the split, the entity store and the request model are tested on frames built by
hand; those frames need known columns. ``reference_config(cfg)`` is the project's contract with
``data.columns`` replaced by ``columns()`` (every role and check: an id, a timestamp, an entity
with a creation time, text, categories with and without allowed values, bounded counts, flags)
and no domain pack, so the tests exercise the core alone. The project's own schema is tested
end to end (``sample_project``, the pipeline) and by its pack's tests.
"""

from __future__ import annotations

from {{cookiecutter.package_name}}.config import SystemConfig


def columns(positive: str, negative: str) -> list[dict]:
    """The reference columns, labelled with the contract's classes."""
    return [
        {"name": "message_id", "dtype": "string", "role": "id", "nullable": False, "unique": True},
        {
            "name": "received_at",
            "dtype": "datetime",
            "role": "timestamp",
            "nullable": False,
            "min": "1995-01-01",
            "max_ahead_days": 1,
        },
        {"name": "account", "dtype": "string", "role": "entity_key", "nullable": False},
        {"name": "account_domain", "dtype": "string", "role": "categorical", "nullable": False},
        {
            "name": "account_created_at",
            "dtype": "datetime",
            "role": "datetime",
            "nullable": True,
            "mostly": 0.0,
            "min": "1970-01-01",
        },
        {
            "name": "reply_to",
            "dtype": "string",
            "role": "categorical",
            "nullable": True,
            "mostly": 0.0,
        },
        {
            "name": "recipient_count",
            "dtype": "int",
            "role": "numeric",
            "nullable": False,
            "min": 1,
            "max": 10000,
        },
        {"name": "subject", "dtype": "string", "role": "text", "nullable": True, "mostly": 0.98},
        {"name": "body", "dtype": "string", "role": "text", "nullable": False},
        {
            "name": "content_type",
            "dtype": "string",
            "role": "categorical",
            "nullable": False,
            "allowed": ["text/plain", "text/html"],
        },
        {"name": "urls", "dtype": "string", "role": "text", "nullable": True, "mostly": 0.0},
        {
            "name": "attachment_count",
            "dtype": "int",
            "role": "numeric",
            "nullable": False,
            "min": 0,
            "max": 100,
        },
        {
            "name": "attachment_types",
            "dtype": "string",
            "role": "categorical",
            "nullable": True,
            "mostly": 0.0,
        },
        {
            "name": "inline_image_count",
            "dtype": "int",
            "role": "numeric",
            "nullable": False,
            "min": 0,
            "max": 100,
        },
        {
            "name": "quality_flags",
            "dtype": "string",
            "role": "flags",
            "nullable": True,
            "mostly": 0.0,
        },
        {
            "name": "label",
            "dtype": "string",
            "role": "label",
            "nullable": False,
            "allowed": [positive, negative],
        },
    ]


def reference_config(cfg: SystemConfig, **data_changes) -> SystemConfig:
    """``cfg`` with the reference columns, no domain pack, and ``data_changes`` applied."""
    problem = cfg.problem
    raw = cfg.model_dump(exclude={"root"})
    # Thresholds aim this far above the precision target in the tests' small frames.
    raw["metrics"]["offline"]["threshold_precision_margin"] = 0.005
    raw["data"].update(
        domain="none",
        columns=columns(problem.positive_class, problem.negative_class),
        column_mapping={},
        label_folders={},
        positive_rate={"min": 0.05, "max": 0.8},
        **data_changes,
    )
    return SystemConfig.model_validate({**raw, "root": cfg.root})


def write_reference(cfg: SystemConfig, path, **data_changes):
    """Write ``reference_config(cfg, **data_changes)`` as a contract file at ``path``."""
    from pathlib import Path

    import yaml

    raw = reference_config(cfg, **data_changes).model_dump(mode="json", exclude={"root"})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path
