"""``deploy``: keep deploy/ in step with the contract and prove it is deployable, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import ConfigOption, console, errors, fail, load

app = typer.Typer(
    help="Render and check the Kubernetes manifests in deploy/.", no_args_is_help=True
)

DeployDir = Annotated[
    Path, typer.Option("--deploy-dir", help="Folder holding k8s/ and monitoring/")
]


@app.command("check")
def deploy_check(
    deploy_dir: DeployDir = Path("deploy"),
    schemas_dir: Annotated[
        Path | None,
        typer.Option(help="CRD JSON schemas [default: $CRD_SCHEMAS_DIR or found beside]"),
    ] = None,
    k8s_version: Annotated[str, typer.Option(help="Kubernetes schema version")] = "1.30",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List every document")] = False,
    config: ConfigOption = None,
) -> None:
    """Build every Kustomize target with kubectl, validate it (schemas, policy); exit 1 on failure."""
    from ..deploy.checks import check_deploy
    from ..deploy.kubectl import KubectlError

    cfg = load(config)
    folder = cfg.path(deploy_dir)
    if not folder.is_dir():
        raise fail(f"{folder}: no such folder")
    try:
        report = check_deploy(cfg, folder, schemas_dir=schemas_dir, k8s_version=k8s_version)
    except KubectlError as exc:
        raise fail(str(exc)) from exc
    lines = report.lines()
    if not verbose:
        lines = [line for line in lines if not line.startswith("ok  ")]
    for line in lines:
        target = console if report.ok or not line.startswith("FAIL") else errors
        target.print(line, highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command("render")
def deploy_render(deploy_dir: DeployDir = Path("deploy"), config: ConfigOption = None) -> None:
    """Rewrite the contract values copied into deploy/ (comments and layout are kept)."""
    from ..deploy.render import render_manifests

    cfg = load(config)
    try:
        changed = render_manifests(cfg, cfg.path(deploy_dir))
    except ValueError as exc:
        raise fail(str(exc)) from exc
    for path in changed:
        console.print(f"rewrote {path}", highlight=False)
    console.print(f"deploy/ matches the contract ({len(changed)} files rewritten)")
