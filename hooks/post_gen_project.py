"""Remove the files of options that were not chosen and record the answers for later updates."""

import json
import os
import shutil
import subprocess
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

PACKAGE = f"src/{ANSWERS['package_name']}"
# Paths that only exist for one value of an option: removed when another value is chosen.
OPTION_PATHS = {
    ("use_case", "spam-email"): [f"{PACKAGE}/domain/email", "tests/domain_email"],
    ("use_case", "card-fraud"): [f"{PACKAGE}/domain/fraud", "tests/domain_fraud"],
    ("ci", "github"): [".github"],
    ("deploy_strategy", "argo-rollouts"): ["deploy/k8s/overlays/rollout"],
    ("deploy_strategy", "istio"): ["deploy/k8s/overlays/shadow", "deploy/k8s/overlays/canary"],
}


def remove_unselected(answers: dict, root: Path) -> list[str]:
    """Delete every path tied to an option value that was not chosen; return what went."""
    removed = []
    for (option, value), paths in OPTION_PATHS.items():
        if answers[option] == value:
            continue
        for relative in paths:
            target = root / relative
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            else:
                continue
            removed.append(relative)
    return removed


def template_location(answers: dict) -> str:
    """Where the template came from: a URL as given, a local folder made absolute.

    Hooks run inside the new project, so a relative folder is resolved against the caller's
    $PWD, which the hook process inherits unchanged.
    """
    location = answers.get("_repo_dir") or answers.get("_template", "")
    if "://" in location or location.startswith("git@") or not location:
        return answers.get("_template", location)
    return str((Path(os.environ.get("PWD", ".")) / location).resolve())


def template_commit(template: str) -> str | None:
    """The template's git commit when baked from a checkout, so `cruft update` can diff."""
    if not Path(template).is_dir():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", template, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def record_answers(answers: dict, root: Path) -> Path:
    """Write `.cruft.json`: cruft's format, whose `context` is also a cookiecutter replay file."""
    public = {k: v for k, v in answers.items() if not k.startswith("_")}
    template = template_location(answers)
    public["_template"] = template
    record = {
        "template": template,
        "commit": template_commit(template),
        "checkout": answers.get("_checkout"),
        "context": {"cookiecutter": public},
        "directory": None,
        "skip": ["data/", "mlruns/", "mlflow.db", "optuna.db", "predictions.db"],
    }
    path = root / ".cruft.json"
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    project = Path.cwd()
    remove_unselected(ANSWERS, project)
    record_answers(ANSWERS, project)
