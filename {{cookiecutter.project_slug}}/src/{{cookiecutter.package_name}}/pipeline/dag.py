"""The training DAG, defined once: its steps, what flows between them and where the gate is.

Everything that trains walks this definition:

- :mod:`.pipeline` turns it into the kfp v2 pipeline (compiled for Kubeflow, run on a laptop by
  ``kfp.local``, and run or submitted by the retraining trigger);
- :mod:`.walk` runs it in this process over the project's folders (``make validate``,
  ``make split``, ``make features`` and ``make train`` walk it up to a step).

A step is a function of :mod:`.steps` and a kfp component of :mod:`.components`, both named
after it and taking the same argument names. Its arguments are pipeline parameters or outputs
of earlier steps (``"task.output"``: an artifact or a returned value). Each output artifact
has a project-relative home that the in-process walk uses; on Kubeflow, artifacts live in the
pipeline root instead. No kfp import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The branches of the gate: evaluate-model returns "passed" or "failed".
TRUNK, PASSED, FAILED = "", "passed", "failed"
GATE = "evaluate-model.gate"
# The home of get-data's records in the in-process walk: the contract's data.source.path (which
# `make data`, `data ingest` or `data profile --write` fill), not a fixed folder.
CONTRACT_SOURCE = "<data.source.path>"


@dataclass(frozen=True)
class Output:
    """An output artifact and its home in the project (a folder, or a file with ``file``)."""

    name: str
    home: str
    file: bool = False


@dataclass(frozen=True)
class Step:
    """One step: its function, its arguments, its outputs and the branch it belongs to."""

    task: str
    function: str
    parameters: dict[str, str] = field(default_factory=dict)  # argument -> pipeline parameter
    inputs: dict[str, str] = field(default_factory=dict)  # argument -> "task.output"
    outputs: tuple[Output, ...] = ()
    returns: tuple[str, ...] = ()  # named values returned, in order
    after: tuple[str, ...] = ()  # ordering without data
    branch: str = TRUNK

    @property
    def upstream(self) -> set[str]:
        return {ref.split(".", 1)[0] for ref in self.inputs.values()} | set(self.after)


CONFIG = {"config_path": "config_path"}
TRACKING = {"mlflow_tracking_uri": "mlflow_tracking_uri"}

# The data step: generates records or ingests data_source. Its variant for real data,
# ingest-data, takes its place when the run's data is an imported object (``data_uri``).
GET_DATA = Step(
    "get-data",
    "get_data",
    parameters={**CONFIG, "source": "data_source", "rows": "rows", **TRACKING},
    outputs=(Output("data", CONTRACT_SOURCE),),
)
INGEST_DATA = Step(
    "ingest-data",
    "ingest_data",
    parameters={**CONFIG, **TRACKING},
    inputs={"source": "importer.artifact"},
    outputs=(Output("data", CONTRACT_SOURCE),),
)

TRAINING: tuple[Step, ...] = (
    Step(
        "validate-data",
        "validate_data",
        parameters=CONFIG,
        inputs={"raw": "get-data.data"},
        outputs=(
            Output("validated", "data/validated"),
            Output("report", "reports/pipeline/validation.md", True),
        ),
        returns=("status", "summary"),
    ),
    Step(
        "check-data",
        "check_data",
        inputs={"status": "validate-data.status", "summary": "validate-data.summary"},
    ),
    Step(
        "split-data",
        "split_data",
        parameters=CONFIG,
        inputs={"validated": "validate-data.validated"},
        outputs=(Output("splits", "data/split"),),
        after=("check-data",),
    ),
    Step(
        "build-features",
        "build_features",
        parameters=CONFIG,
        inputs={"splits": "split-data.splits"},
        outputs=(Output("features", "data/features"),),
    ),
    Step(
        "train-baseline",
        "train_baseline",
        parameters=CONFIG,
        inputs={"features": "build-features.features"},
        outputs=(Output("baseline", "artifacts/baseline"),),
    ),
    Step(
        "tune-model",
        "tune_model",
        parameters={**CONFIG, "trials": "trials", "timeout_s": "timeout_s", **TRACKING},
        inputs={"features": "build-features.features"},
        outputs=(
            Output("candidate", "artifacts/candidate"),
            Output("report", "reports/pipeline/tuning.html", True),
        ),
    ),
    Step(
        "evaluate-model",
        "evaluate_model",
        parameters={**CONFIG, **TRACKING},
        inputs={
            "features": "build-features.features",
            "candidate": "tune-model.candidate",
            "baseline": "train-baseline.baseline",
        },
        outputs=(
            Output("evaluated", "artifacts/evaluated"),
            Output("evaluation", "reports/evaluation"),
            Output("metrics", "reports/pipeline/metrics.json", True),
            Output("model_card", "reports/evaluation/model_card.md", True),
            Output("report", "reports/pipeline/evaluation.html", True),
        ),
        returns=("gate", "reasons"),
    ),
    Step(
        "promote-model",
        "promote_model",
        parameters={
            **CONFIG,
            **TRACKING,
            "promotion_margin": "promotion_margin",
            "promote_to": "promote_to",
        },
        inputs={
            "features": "build-features.features",
            "evaluated": "evaluate-model.evaluated",
            "evaluation": "evaluate-model.evaluation",
        },
        outputs=(Output("decision", "reports/pipeline/decision.md", True),),
        returns=("outcome", "version"),
        branch=PASSED,
    ),
    Step(
        "export-serving-bundle",
        "export_serving_bundle",
        parameters={**CONFIG, **TRACKING},
        inputs={"version": "promote-model.version", "outcome": "promote-model.outcome"},
        outputs=(Output("serving", "artifacts/serving"),),
        branch=PASSED,
    ),
    Step(
        "report-gate-failure",
        "report_gate_failure",
        inputs={"reasons": "evaluate-model.reasons"},
        outputs=(Output("note", "reports/pipeline/gate-failure.md", True),),
        branch=FAILED,
    ),
)

# The batch-scoring pipeline's one step: an imported file of records (``data_uri``), scored by
# the registry's champion into a Dataset of predictions, every prediction in the log.
SCORE_BATCH = Step(
    "score-batch",
    "score_batch",
    parameters={**CONFIG, **TRACKING},
    inputs={"records": "importer.artifact"},
    outputs=(Output("predictions", "data/predictions"),),
    returns=("scored", "quarantined", "version"),
)

STEPS: tuple[Step, ...] = (GET_DATA, *TRAINING)
TASKS: tuple[str, ...] = tuple(step.task for step in STEPS)
PROMOTION_BRANCH: tuple[str, ...] = tuple(s.task for s in TRAINING if s.branch == PASSED)
ELSE_BRANCH: tuple[str, ...] = tuple(s.task for s in TRAINING if s.branch == FAILED)


def step(task: str) -> Step:
    """The step named ``task``; ValueError naming the known ones otherwise."""
    for candidate in (*STEPS, INGEST_DATA):
        if candidate.task == task:
            return candidate
    raise ValueError(f"unknown step {task!r}; the steps are: {', '.join(TASKS)}")


def check(steps: tuple[Step, ...] = STEPS) -> None:
    """Every input names an earlier step and one of its outputs, and a branch follows the gate.

    The module checks itself on import, so a step wired to a name that does not exist fails
    at once rather than in the middle of a run.
    """
    seen: dict[str, Step] = {}
    gate_task = GATE.split(".", 1)[0]
    for current in steps:
        for argument, ref in current.inputs.items():
            task, _, name = ref.partition(".")
            source = seen.get(task)
            if source is None:
                raise ValueError(f"{current.task}.{argument}: {task!r} is not an earlier step")
            names = {o.name for o in source.outputs} | set(source.returns)
            if name not in names:
                raise ValueError(f"{current.task}.{argument}: {task} has no output {name!r}")
        for task in current.after:
            if task not in seen:
                raise ValueError(f"{current.task} runs after {task!r}, not an earlier step")
        if current.branch != TRUNK and gate_task not in seen:
            raise ValueError(f"{current.task} is on a branch of the gate but comes before it")
        if current.branch == TRUNK and any(s.branch != TRUNK for s in seen.values()):
            raise ValueError(f"{current.task}: the branches of the gate end the DAG")
        seen[current.task] = current


check()
