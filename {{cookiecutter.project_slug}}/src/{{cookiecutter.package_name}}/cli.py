"""One command line for every stage: each sub-command is a thin call into a stage function.

Heavy libraries are imported inside the commands so that `--help` and `config check` stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console

from .config import ConfigError, SystemConfig, find_config, load_config

app = typer.Typer(
    help="The ML system's stages, from raw data to a monitored model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and check the contract (configs/system.yaml).")
app.add_typer(config_app, name="config")

console = Console()
errors = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Contract file [default: $SYSTEM_CONFIG or configs/system.yaml]"
    ),
]


def _load(config: Path | None) -> SystemConfig:
    """Load the contract or exit 2 with the problems, one per line."""
    try:
        return load_config(config)
    except ConfigError as exc:
        errors.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


@config_app.command("check")
def config_check(config: ConfigOption = None) -> None:
    """Validate the contract; exit 2 naming each bad key."""
    cfg = _load(config)
    console.print(
        f"[green]contract OK[/green]: {find_config(config)} "
        f"(version {cfg.contract_version}, problem '{cfg.problem.name}', "
        f"{len(cfg.data.columns)} columns)",
        highlight=False,
    )


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the contract as the stages see it, defaults included."""
    cfg = _load(config)
    values = cfg.model_dump(mode="json", exclude={"root"})
    # Plain output: this is YAML for machines too, and rich would wrap long lines.
    typer.echo(yaml.safe_dump(values, sort_keys=False, allow_unicode=True, width=10_000), nl=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
