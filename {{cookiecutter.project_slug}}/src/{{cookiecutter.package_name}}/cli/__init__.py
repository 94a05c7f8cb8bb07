"""One command line for every stage: each sub-command is a thin call into a stage function.

Heavy libraries are imported inside the commands so that `--help` and `config check` stay fast.
"""

from __future__ import annotations

import os

import typer

from . import config, data, deploy, models, monitoring, pipeline, serving

app = typer.Typer(
    help="The ML system's stages, from raw data to a monitored model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config.app, name="config")
app.add_typer(data.app, name="data")
app.add_typer(models.features_app, name="features")
app.command("train")(models.train)
app.command("tune")(models.tune)
app.command("evaluate")(models.evaluate)
app.command("promote")(models.promote)
app.add_typer(pipeline.app, name="pipeline")
app.command("serve")(serving.serve)
app.command("feedback")(serving.feedback)
app.command("traffic")(serving.traffic)
app.command("monitor")(monitoring.monitor)
app.command("compare")(monitoring.compare)
app.add_typer(deploy.app, name="deploy")


def main() -> None:
    """Console-script entry point."""
    # OpenMP reads this once, when scikit-learn or XGBoost is first imported: busy-waiting idle
    # threads made tuning 5x slower on a 2-core machine shared with other processes.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app()
