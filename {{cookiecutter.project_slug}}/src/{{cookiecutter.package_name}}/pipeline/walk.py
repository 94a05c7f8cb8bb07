"""Walk the training DAG in this process, over the project's folders.

The same steps, arguments and gate as the kfp pipeline (:mod:`.dag`), without kfp: each
artifact is its home in the project (``data/split``, ``artifacts/candidate``,
``reports/evaluation``...), so ``make train`` leaves its results where a person looks for them
and a walk can resume from any step whose inputs are already there. The records come from
the contract's ``data.source.path`` (``make data``, ``data ingest`` or ``data profile
--write`` put them there), in place of get-data.

Returned values (the gate, the registered version) are kept in ``reports/pipeline/walk.json``
for a later walk that starts after the step that returned them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SystemConfig
from . import steps as step_functions
from .dag import (
    CONTRACT_SOURCE,
    FAILED,
    GATE,
    GET_DATA,
    TRAINING,
    TRUNK,
    Output,
    Step,
)
from .pipeline import default_arguments

STATE_FILE = Path("reports/pipeline/walk.json")
JOURNAL_FILE = Path("reports/pipeline/journal.jsonl")
WALKED: tuple[str, ...] = tuple(s.task for s in TRAINING)
REJECTED = "rejected"


@dataclass
class LocalArtifact:
    """What a step reads of a kfp artifact: ``path``, ``uri``, ``metadata``, ``log_metric``."""

    path: str
    file: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return Path(self.path).resolve().as_uri()

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value
        if self.file:  # a Metrics artifact's home is a JSON file
            Path(self.path).write_text(json.dumps(self.metadata, indent=2) + "\n", "utf-8")


@dataclass
class Walk:
    """What a walk did: the steps' journal records, the values they returned, how long."""

    tasks: tuple[str, ...]
    records: list[dict] = field(default_factory=list)
    returns: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    journal_path: Path | None = None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    def record(self, task: str) -> dict | None:
        found = [r for r in self.records if r["task"] == task]
        return found[-1] if found else None

    def ran(self, task: str) -> bool:
        record = self.record(task)
        return record is not None and record.get("status") == "succeeded"

    @property
    def failed_task(self) -> str | None:
        failed = [r["task"] for r in self.records if r.get("status") == "failed"]
        return failed[0] if failed else None

    def value(self, ref: str) -> Any:
        task, _, name = ref.partition(".")
        return self.returns.get(task, {}).get(name)

    @property
    def rejections(self) -> list[str]:
        """Why the walk produced no new champion or challenger (empty when it did, or when it
        did not get that far)."""
        if self.value(GATE) == FAILED:
            return [f"the gate failed: {self.value('evaluate-model.reasons')}"]
        version = self.value("promote-model.version")
        if self.value("promote-model.outcome") == REJECTED:
            return [f"the registry's gate rejected version {version}"]
        return []


def select(start: str | None = None, stop: str | None = None) -> tuple[Step, ...]:
    """The steps from ``start`` to ``stop`` (both included, default: all); past the gate, both
    of its branches (the gate decides which one runs)."""
    for name in (start, stop):
        if name == GET_DATA.task:
            raise ValueError(
                f"{GET_DATA.task} is not walked here: the records are the contract's "
                "data.source.path (`make data`, `data ingest`); `pipeline run --local` runs it"
            )
        if name is not None and name not in WALKED:
            raise ValueError(f"unknown step {name!r}; the steps are: {', '.join(WALKED)}")
    first = WALKED.index(start) if start else 0
    last = WALKED.index(stop) if stop else len(WALKED) - 1
    if first > last:
        raise ValueError(f"{start} comes after {stop}")
    chosen = TRAINING[first : last + 1]
    if any(s.branch != TRUNK for s in chosen):
        chosen += tuple(s for s in TRAINING[last + 1 :] if s.branch == FAILED)
    return chosen


def walk(
    cfg: SystemConfig,
    config_path: Path,
    *,
    start: str | None = None,
    stop: str | None = None,
    arguments: dict[str, Any] | None = None,
    announce: Callable[[str], None] = print,
) -> Walk:
    """Run the selected steps in order; stop at the first that fails (``Walk.error``).

    ``arguments`` override the pipeline parameters' defaults (the contract's). A step whose
    input is an artifact no selected step produces reads it from its home, which must exist.
    """
    chosen = select(start, stop)
    parameters = {**default_arguments(cfg), "config_path": str(config_path), **(arguments or {})}
    state_path, journal_path = cfg.path(STATE_FILE), cfg.path(JOURNAL_FILE)
    journal_path.parent.mkdir(parents=True, exist_ok=True)
    journal_path.write_text("", encoding="utf-8")
    result = Walk(tasks=tuple(s.task for s in chosen), journal_path=journal_path)
    result.returns = _load_state(state_path)
    homes = {(s.task, o.name): o for s in (GET_DATA, *TRAINING) for o in s.outputs}
    produced = {(s.task, name) for s in chosen for name in _names(s)}
    _check_inputs(cfg, chosen, homes, produced, result)

    saved = {
        k: os.environ.get(k) for k in (step_functions.JOURNAL_ENV, step_functions.IN_PROJECT_ENV)
    }
    os.environ[step_functions.JOURNAL_ENV] = str(journal_path)
    os.environ[step_functions.IN_PROJECT_ENV] = "1"
    started = time.perf_counter()
    try:
        for current in chosen:
            if current.branch != TRUNK and current.branch != result.value(GATE):
                continue
            announce(f"-> {current.task}")
            for task in [t for t in result.returns if t in _downstream(current.task)]:
                del result.returns[task]
            try:
                _run(cfg, current, parameters, homes, result)
            except Exception as exc:  # the step's journal record holds the traceback's gist
                result.error = f"{type(exc).__name__}: {exc}"
                break
            finally:
                result.records = step_functions.read_journal(journal_path)
            _save_state(state_path, result.returns)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        result.seconds = time.perf_counter() - started
    return result


def _run(cfg, current: Step, parameters: dict, homes: dict, result: Walk) -> None:
    arguments = {arg: parameters[name] for arg, name in current.parameters.items()}
    for arg, ref in current.inputs.items():
        task, _, name = ref.partition(".")
        home = homes.get((task, name))
        arguments[arg] = _artifact(cfg, home) if home else result.value(ref)
    for output in current.outputs:
        arguments[output.name] = _artifact(cfg, output, create=True)
    returned = getattr(step_functions, current.function)(**arguments)
    if current.returns:
        values = returned if len(current.returns) > 1 else (returned,)
        result.returns[current.task] = dict(zip(current.returns, values, strict=True))


def _artifact(cfg: SystemConfig, output: Output, *, create: bool = False) -> LocalArtifact:
    home = cfg.data.source.path if output.home == CONTRACT_SOURCE else Path(output.home)
    path = cfg.path(home)
    if create and output.file:
        path.parent.mkdir(parents=True, exist_ok=True)
    return LocalArtifact(str(path), file=output.file)


def _check_inputs(cfg, chosen, homes: dict, produced: set, result: Walk) -> None:
    """Fail before the first step when an input neither exists nor is made by this walk."""
    gate_task, _, gate_value = GATE.partition(".")
    branched = any(s.branch != TRUNK for s in chosen)
    if branched and (gate_task, gate_value) not in produced and result.value(GATE) is None:
        raise FileNotFoundError(
            f"the gate's branches need {GATE} from an earlier walk: walk from {gate_task}"
        )
    for current in chosen:
        for ref in current.inputs.values():
            task, _, name = ref.partition(".")
            if (task, name) in produced:
                continue
            home = homes.get((task, name))
            if home is not None:
                path = _artifact(cfg, home).path
                if not Path(path).exists():
                    hint = "make data" if task == GET_DATA.task else f"walk from {task}"
                    raise FileNotFoundError(f"{current.task} reads {path}: missing ({hint})")
            elif result.value(ref) is None and current.branch in (TRUNK, result.value(GATE)):
                raise FileNotFoundError(
                    f"{current.task} needs {ref} from an earlier walk: walk from {task}"
                )


def _names(current: Step) -> list[str]:
    return [o.name for o in current.outputs] + list(current.returns)


def _downstream(task: str) -> set[str]:
    """``task`` and every step after it: their returned values are stale once it reruns."""
    index = WALKED.index(task)
    return set(WALKED[index:])


def _load_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save_state(path: Path, returns: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(returns, indent=2) + "\n", encoding="utf-8")
