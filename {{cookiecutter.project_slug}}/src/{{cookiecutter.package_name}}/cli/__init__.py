"""One command line for every stage: each sub-command is a thin call into a stage function.

Heavy libraries are imported inside the commands so that `--help` and `config check` stay fast.
"""

from __future__ import annotations

import os
import sys

import typer

from . import config, data, deploy, models, monitoring, pipeline, serving

# Set to show the Python traceback of an unexpected error instead of its one-line summary.
TRACEBACK_ENV = "SHOW_TRACEBACK"

app = typer.Typer(
    help="The ML system's stages, from raw data to a monitored model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(config.app, name="config")
app.add_typer(data.app, name="data")
app.add_typer(models.features_app, name="features")
app.command("baseline")(models.baseline)
app.command("tune")(models.tune)
app.command("evaluate")(models.evaluate)
app.command("promote")(models.promote)
app.add_typer(pipeline.app, name="pipeline")
app.command("serve")(serving.serve)
app.command("predict")(serving.predict)
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
    try:
        app()
    except Exception as exc:
        # Stages report bad data with their own one-line errors; anything that still escapes
        # is reported the same way (what failed, where), the traceback on request.
        if os.environ.get(TRACEBACK_ENV):
            raise
        where = _origin(exc)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"error: {type(exc).__name__}: {message}{where} "
            f"({TRACEBACK_ENV}=1 shows the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)


def _origin(exc: BaseException) -> str:
    """` (at module.py:123)`: the innermost frame of the project's own code, if any."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__", "").startswith(__package__.split(".")[0]):
            found = tb
        tb = tb.tb_next
    if found is None:
        return ""
    return f" (at {os.path.basename(found.tb_frame.f_code.co_filename)}:{found.tb_lineno})"
