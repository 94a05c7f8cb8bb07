"""``deploy check``: build every Kustomize target in deploy/ and prove it is deployable, offline.

For each target (``k8s/base``, every ``k8s/overlays/*``, ``monitoring``) the documents are built
by the pinned ``kubectl kustomize`` (see :mod:`.manifests` and :mod:`.kubectl`), then:

1. built-in kinds are validated with kubernetes-validate against the strict schema of a stated
   Kubernetes version; custom resources against their CRD JSON schema (skipped, with the reason,
   when no schema folder is found: see :mod:`.schemas`);
2. the policy of :mod:`.policy` is applied;
3. every contract value copied into deploy/ must equal the contract (:mod:`.render`); the
   report names the command that rewrites them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import SystemConfig
from .kubectl import describe, require_kubectl
from .manifests import KustomizeError, Resource, build, kustomization_file
from .policy import Context, run_all
from .render import OwnedValue, render_command, stale_values
from .report import CheckReport, DocumentResult, Finding
from .schemas import find_crd_schemas, is_builtin, validate_builtin, validate_custom
from .server import REQUIRED_SERVER_METRICS

__all__ = ["REQUIRED_SERVER_METRICS", "CheckReport", "check_deploy", "deploy_targets"]

DEFAULT_K8S_VERSION = "1.30"
# The overlays each deploy strategy needs (the other strategy's are removed at generation).
STRATEGY_OVERLAYS = {"argo-rollouts": ("rollout",), "istio": ("shadow", "canary")}


def deploy_targets(deploy_dir: str | Path) -> list[Path]:
    """The Kustomize folders to build: the base, each overlay present, the monitoring folder."""
    deploy_dir = Path(deploy_dir)
    candidates = [deploy_dir / "k8s" / "base"]
    overlays = deploy_dir / "k8s" / "overlays"
    if overlays.is_dir():
        candidates += sorted(p for p in overlays.iterdir() if p.is_dir())
    candidates.append(deploy_dir / "monitoring")
    return [p for p in candidates if kustomization_file(p) is not None]


def check_deploy(
    cfg: SystemConfig,
    deploy_dir: str | Path,
    *,
    schemas_dir: str | Path | None = None,
    k8s_version: str = DEFAULT_K8S_VERSION,
    contract_path: str | Path | None = None,
) -> CheckReport:
    """Render and validate every target in ``deploy_dir``; the report lists each failure.

    Raises KubectlError (naming ``make kubectl``) when there is no kubectl to render with.
    """
    deploy_dir = Path(deploy_dir)
    kubectl = require_kubectl()
    crd_dir, crd_note = find_crd_schemas(deploy_dir.resolve().parent, schemas_dir)
    report = CheckReport(
        k8s_version=k8s_version,
        crd_schemas=crd_note if crd_dir else "none",
        renderer=describe(kubectl),
    )
    if crd_dir is None:
        report.skipped.append(f"CRD schema validation: {crd_note}")

    _check_strategy(cfg, deploy_dir, report)
    built: dict[str, list[Resource]] = {}
    folders = deploy_targets(deploy_dir)
    # Each target is one kubectl process: run them side by side.
    with ThreadPoolExecutor(max_workers=max(1, len(folders))) as pool:
        futures = [pool.submit(build, folder, kubectl) for folder in folders]
    for folder, future in zip(folders, futures, strict=True):
        target = str(folder.relative_to(deploy_dir))
        report.targets.append(target)
        try:
            built[target] = future.result()
        except KustomizeError as exc:
            report.failures.append(Finding(target, "", "kubectl kustomize", "", str(exc)))
    base = built.get("k8s/base", [])
    for target, resources in built.items():
        ctx = Context(target, resources, cfg, deploy_dir, references=base)
        for res in resources:
            _validate(ctx, res, crd_dir, k8s_version, report)
        report.failures.extend(run_all(ctx))

    for value in stale_values(cfg, deploy_dir, contract_path=contract_path):
        source = str(value.file.relative_to(deploy_dir))
        report.failures.append(Finding("contract", "", source, "", _stale_message(value), source))
    return report


def _stale_message(value: OwnedValue) -> str:
    if value.problem:
        return f"{value.where}: {value.problem} ({value.contract_key})"
    if value.mode == "text":
        return f"{value.where} differs from {value.contract_key}: run `{render_command()}`"
    return (
        f"{value.where} is {value.actual!r}, the contract ({value.contract_key}) gives "
        f"{value.expected!r}: run `{render_command()}`"
    )


def _check_strategy(cfg: SystemConfig, deploy_dir: Path, report: CheckReport) -> None:
    strategy = cfg.platform.deploy_strategy
    for overlay in STRATEGY_OVERLAYS.get(strategy, ()):
        if kustomization_file(deploy_dir / "k8s" / "overlays" / overlay) is None:
            message = f"platform.deploy_strategy is {strategy} but the overlay is missing"
            report.failures.append(Finding("contract", "", f"k8s/overlays/{overlay}", "", message))


def _validate(ctx: Context, res: Resource, crd_dir, k8s_version: str, report: CheckReport) -> None:
    if is_builtin(res.doc):
        errors = validate_builtin(res.doc, k8s_version)
        how = f"kubernetes {k8s_version} strict schema"
    elif crd_dir is not None:
        errors = validate_custom(res.doc, crd_dir)
        how = "CRD schema"
    else:
        errors, how = [], "SKIPPED: no CRD schemas"
    for error in errors:
        ctx.fail(res, error.path, f"schema: {error.message}")
    report.documents.append(
        DocumentResult(
            ctx.target, res.kind, res.name, res.namespace, ctx.source(res), how, not errors
        )
    )
