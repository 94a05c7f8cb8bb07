"""Schema validation: built-in kinds with kubernetes-validate, custom resources with CRD schemas.

CRD schemas are JSON files laid out as ``<group>/<kind>_<version>.json`` (the layout of the
datreeio CRDs catalog). They are found through, in order: an explicit folder, the environment
variable ``CRD_SCHEMAS_DIR``, or ``../shared/schemas/crds`` beside the project or beside the
template checkout recorded in ``.cruft.json``. Without them, custom resources are skipped, with
the reason in the report.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CRD_SCHEMAS_ENV = "CRD_SCHEMAS_DIR"
SHARED_CRDS = Path("..") / "shared" / "schemas" / "crds"


@dataclass(frozen=True)
class SchemaError:
    """One schema violation: where in the document, and what."""

    path: str
    message: str


def is_builtin(doc: dict) -> bool:
    """True for Kubernetes' own kinds (core, apps, ..., *.k8s.io), False for custom resources."""
    api = str(doc.get("apiVersion", ""))
    group = api.split("/", 1)[0] if "/" in api else ""
    return "." not in group or group.endswith(".k8s.io")


def find_crd_schemas(
    project_dir: Path, schemas_dir: str | Path | None = None
) -> tuple[Path | None, str]:
    """The CRD schema folder to use and how it was found, or None and why there is none."""
    if schemas_dir is not None:
        path = Path(schemas_dir)
        return (path, f"{path} (argument)") if path.is_dir() else (None, f"{path} does not exist")
    if os.environ.get(CRD_SCHEMAS_ENV):
        path = Path(os.environ[CRD_SCHEMAS_ENV])
        if path.is_dir():
            return path, f"{path} (${CRD_SCHEMAS_ENV})"
        return None, f"${CRD_SCHEMAS_ENV}={path} does not exist"
    candidates = [project_dir / SHARED_CRDS]
    template = _template_checkout(project_dir)
    if template is not None:
        candidates.append(template / SHARED_CRDS)
    for path in candidates:
        if path.is_dir():
            return path.resolve(), f"{path.resolve()} (found beside the project or template)"
    return None, (
        f"no CRD schema folder: pass one, set ${CRD_SCHEMAS_ENV}, or place it at "
        f"{' or '.join(str(c) for c in candidates)}"
    )


def _template_checkout(project_dir: Path) -> Path | None:
    record = project_dir / ".cruft.json"
    try:
        template = json.loads(record.read_text(encoding="utf-8")).get("template") or ""
    except (OSError, ValueError):
        return None
    path = Path(template)
    return path if "://" not in template and path.is_dir() else None


def crd_schema_file(schemas_dir: Path, doc: dict) -> Path:
    """Where the schema of a custom resource lives: ``<group>/<kind>_<version>.json``."""
    group, _, version = str(doc.get("apiVersion", "")).partition("/")
    return schemas_dir / group / f"{str(doc.get('kind', '')).lower()}_{version}.json"


@lru_cache(maxsize=32)
def _crd_validator(path: str) -> Any:
    import jsonschema

    schema = json.loads(Path(path).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def validate_custom(doc: dict, schemas_dir: Path) -> list[SchemaError]:
    """Every violation of the CRD schema by ``doc`` (a missing schema is one violation)."""
    path = crd_schema_file(schemas_dir, doc)
    if not path.is_file():
        message = f"no CRD schema for {doc.get('apiVersion')} {doc.get('kind')} (looked for {path})"
        return [SchemaError("apiVersion", message)]
    validator = _crd_validator(str(path))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [SchemaError(format_path(e.absolute_path), e.message) for e in errors]


def validate_builtin(doc: dict, k8s_version: str) -> list[SchemaError]:
    """Violations of the strict Kubernetes schema (kubernetes-validate reports the first)."""
    # The same document recurs in every overlay that includes the base: validate it once.
    return list(_validate_builtin(json.dumps(doc, sort_keys=True), k8s_version))


@lru_cache(maxsize=1024)
def _validate_builtin(doc_json: str, k8s_version: str) -> tuple[SchemaError, ...]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(json.loads(doc_json), k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return (SchemaError(format_path(exc.absolute_path), exc.message),)
    except kubernetes_validate.SchemaNotFoundError as exc:
        return (SchemaError("apiVersion", exc.message),)
    return ()


def format_path(parts) -> str:
    """A JSON path as ``spec.template.spec.containers[0].image``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<document>"
