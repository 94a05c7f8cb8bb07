"""``config``: check the contract and show it as the stages see it."""

from __future__ import annotations

import typer
import yaml

from ..config import find_config
from .common import ConfigOption, console, load

app = typer.Typer(
    help="Inspect and check the contract (configs/system.yaml).", no_args_is_help=True
)


@app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the contract; exit 2 naming each bad key."""
    cfg = load(config)
    console.print(
        f"[green]contract OK[/green]: {find_config(config)} "
        f"(version {cfg.contract_version}, problem '{cfg.problem.name}', "
        f"{len(cfg.data.columns)} columns)",
        highlight=False,
    )


@app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the contract as the stages see it, defaults included."""
    cfg = load(config)
    values = cfg.model_dump(mode="json", exclude={"root"})
    # Plain output: this is YAML for machines too, and rich would wrap long lines.
    typer.echo(yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=10_000), nl=False)
