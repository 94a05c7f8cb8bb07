"""One training DAG (pipeline/dag.py): the kfp pipeline is wired from it, and the in-process
walk that `make validate` ... `make train` run follows it over the project's folders.

The walks train on a small generated sample (2 Optuna trials) in a temporary project with its
own contract copy and stores; the journal the steps write says which steps really ran.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sample_project import scaled_rows

from {{cookiecutter.package_name}}.config import load_config
from {{cookiecutter.package_name}}.models import registry
from {{cookiecutter.package_name}}.pipeline import dag, walk
from {{cookiecutter.package_name}}.pipeline import run as runner

ROWS, TRIALS = scaled_rows(2000), 2
TRUNK_TASKS = tuple(s.task for s in dag.TRAINING if s.branch == dag.TRUNK)


def project(project_root, folder: Path, rows: int = ROWS, **changes) -> Path:
    """A project folder: the contract with ``changes`` (dotted keys) and records at its
    data.source.path, as `make data` leaves them."""
    from {{cookiecutter.package_name}}.data import synthetic

    data = yaml.safe_load((project_root / "configs/system.yaml").read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[key] = value
    path = folder / "configs/system.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    cfg = load_config(path)
    synthetic.run(cfg, cfg.path(cfg.data.source.path), rows=rows, seed=5, progress=False)
    return path


def cli(path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "{{cookiecutter.package_name}}", "pipeline", "run"]
    return subprocess.run(
        [*command, "--in-process", *args, "-c", str(path)],
        capture_output=True,
        text=True,
        cwd=path.parent.parent,
        timeout=900,
    )


def journal(path: Path) -> list[str]:
    lines = (path.parent.parent / walk.JOURNAL_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["task"] for line in lines if line]


@pytest.fixture(autouse=True)
def _own_stores(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "ENTITY_STORE_URL"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------
# The definition


def test_the_dag_refuses_a_step_wired_to_nothing():
    steps = list(dag.STEPS)
    split = dag.step("split-data")
    steps[steps.index(split)] = dag.Step(
        split.task, split.function, inputs={"validated": "validate-data.valid"}
    )
    with pytest.raises(ValueError, match="validate-data has no output 'valid'"):
        dag.check(tuple(steps))
    late = dag.Step("early", "early", inputs={"x": "tune-model.candidate"})
    with pytest.raises(ValueError, match="'tune-model' is not an earlier step"):
        dag.check((late, *dag.STEPS))
    trunk_after_branch = (*dag.STEPS, dag.Step("audit", "audit"))
    with pytest.raises(ValueError, match="the branches of the gate end the DAG"):
        dag.check(trunk_after_branch)


def test_every_step_is_a_component_and_a_step_function_with_the_same_arguments():
    import inspect

    from {{cookiecutter.package_name}}.pipeline import components, steps

    for step in (*dag.STEPS, dag.INGEST_DATA):
        component = inspect.signature(getattr(components, step.function))
        function = inspect.signature(getattr(steps, step.function))
        wired = {*step.parameters, *step.inputs, *(o.name for o in step.outputs)}
        assert set(component.parameters) == wired, step.task
        assert set(function.parameters) == wired, step.task


def test_the_compiled_pipeline_is_wired_as_the_dag_says(cfg, tmp_path):
    path = runner.compile_pipeline(cfg, tmp_path / "pipeline.yaml")
    spec = next(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    root = spec["root"]["dag"]["tasks"]
    for step in dag.STEPS:
        if step.branch != dag.TRUNK:
            continue
        inputs = root[step.task].get("inputs", {})
        for argument, name in step.parameters.items():
            assert inputs["parameters"][argument] == {"componentInputParameter": name}
        for argument, ref in step.inputs.items():
            task, _, output = ref.partition(".")
            kind = "artifacts" if argument in inputs.get("artifacts", {}) else "parameters"
            source = inputs[kind][argument]
            source = source.get("taskOutputArtifact") or source["taskOutputParameter"]
            assert source["producerTask"] == task, (step.task, argument)
            assert output in (source.get("outputArtifactKey"), source.get("outputParameterKey"))
        assert set(root[step.task].get("dependentTasks", [])) == step.upstream, step.task

    # The branches: each step sits under the condition of its side of the gate.
    condition_of = {}
    for component in spec["components"].values():
        for task in component.get("dag", {}).get("tasks", {}).values():
            condition = task.get("triggerPolicy", {}).get("condition")
            if condition:
                condition_of[task["componentRef"]["name"]] = condition
    passed = "inputs.parameter_values['pipelinechannel--evaluate-model-gate'] == 'passed'"
    expected = {dag.PASSED: passed, dag.FAILED: f"!({passed})"}
    for name, component in spec["components"].items():
        for task in component.get("dag", {}).get("tasks", {}):
            step = next((s for s in dag.TRAINING if s.task == task), None)
            if step is not None and step.branch != dag.TRUNK:
                assert condition_of[name] == expected[step.branch], task


def test_select_walks_from_one_step_to_another_and_takes_both_sides_of_the_gate():
    names = [s.task for s in walk.select()]
    assert names == [s.task for s in dag.TRAINING]
    assert [s.task for s in walk.select(stop="split-data")] == [
        "validate-data",
        "check-data",
        "split-data",
    ]
    tail = [s.task for s in walk.select(start="evaluate-model", stop="promote-model")]
    assert tail == ["evaluate-model", "promote-model", "report-gate-failure"]
    for bad, message in (
        ({"start": "get-data"}, "not walked here"),
        ({"stop": "deploy"}, "unknown step 'deploy'"),
        ({"start": "tune-model", "stop": "split-data"}, "tune-model comes after split-data"),
    ):
        with pytest.raises(ValueError, match=message):
            walk.select(**bad)


def test_the_cli_says_which_options_belong_to_which_run(tmp_path, project_root):
    path = tmp_path / "configs/system.yaml"
    path.parent.mkdir(parents=True)
    path.write_text((project_root / "configs/system.yaml").read_text(encoding="utf-8"))
    both = cli(path, "--local")
    assert both.returncode == 2 and "choose one" in both.stderr
    rows = cli(path, "--rows", "100")
    assert rows.returncode == 2 and "belong to --local" in rows.stderr
    source = cli(path, "-p", "data_source=generate")
    assert source.returncode == 2 and "data.source.path" in source.stderr
    unknown = cli(path, "--to", "deploy")
    assert unknown.returncode == 2 and "unknown step 'deploy'" in unknown.stderr
    missing = cli(path, "--from", "tune-model")
    assert missing.returncode == 2
    assert "data/features: missing (walk from build-features)" in missing.stderr


# ---------------------------------------------------------------------------------------------
# Walks


@pytest.mark.slow
def test_make_train_walks_the_dag_into_the_project_folders_and_resumes(project_root, tmp_path):
    # Targets far below what any sensible model reaches on the pack's small sample.
    path = project(
        project_root,
        tmp_path,
        **{"metrics.offline.target_precision": 0.1, "metrics.offline.target_recall": 0.3},
    )
    cfg = load_config(path)
    out = cli(path, "--trials", str(TRIALS), "--strict")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ran = journal(path)
    assert ran == [s.task for s in dag.TRAINING if s.branch != dag.FAILED]
    for task in ran:
        assert f"-> {task}\n" in out.stdout
    assert "registered models:/" in out.stdout and "is now 'champion'" in out.stdout

    # Each output is at its home in the project, where the stage commands put theirs.
    root = tmp_path
    for part in ("train", "validation", "test"):
        assert (root / f"data/split/{part}.parquet").is_file()
        assert (root / f"data/features/{part}.parquet").is_file()
    assert (root / "data/validated/report.json").is_file()
    assert (root / "artifacts/baseline/bundle.json").is_file()
    assert (root / "artifacts/evaluated/bundle.json").is_file()
    assert (root / "reports/evaluation/model_card.md").is_file()
    assert any((root / "reports/tuning").iterdir())  # the plots, kept in the project
    metrics = json.loads((root / "reports/pipeline/metrics.json").read_text())
    assert 0.5 < metrics["test_pr_auc"] <= 1
    champion = registry.get_version(cfg, registry.CHAMPION)
    served = json.loads((root / "artifacts/serving/serving.json").read_text())
    assert served["model_uri"] == champion.uri and "champion" in served["aliases"]
    state = json.loads((root / walk.STATE_FILE).read_text())
    assert state["evaluate-model"]["gate"] == "passed"
    assert state["promote-model"]["version"] == int(champion.version)

    # A walk from the gate's step reuses the features and the candidate where they are.
    again = cli(path, "--from", "evaluate-model")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert journal(path) == ["evaluate-model", "promote-model", "export-serving-bundle"]
    state = json.loads((root / walk.STATE_FILE).read_text())
    # The same evaluation of the same candidate is the same bundle: registered once.
    assert state["promote-model"]["version"] == int(champion.version)

    # From the registry's step on, the gate's value comes from the state the walk kept.
    last = cli(path, "--from", "export-serving-bundle")
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    assert journal(path) == ["export-serving-bundle"]


@pytest.mark.slow
def test_a_failed_gate_exits_5_with_strict_or_without_a_champion(project_root, tmp_path):
    """Without --strict a walk goes on past a rejected model with the current champion (the
    promote command's test covers that); with none there is nothing to serve: it stops too."""
    path = project(
        project_root,
        tmp_path,
        rows=scaled_rows(1200),
        **{"metrics.offline.target_precision": 1.0, "metrics.offline.target_recall": 1.0},
    )
    strict = cli(path, "--trials", "1", "--strict")
    assert strict.returncode == 5, strict.stdout[-3000:] + strict.stderr[-3000:]
    assert "not promoted: the gate failed" in strict.stderr
    ran = journal(path)
    assert ran[-1] == "report-gate-failure" and "promote-model" not in ran
    assert "Not promoted" in (tmp_path / "reports/pipeline/gate-failure.md").read_text()
    with pytest.raises(registry.RegistryError):
        registry.get_version(load_config(path), "latest")

    lenient = cli(path, "--from", "evaluate-model")
    assert lenient.returncode == 5, lenient.stderr[-3000:]
    assert "not promoted: the gate failed" in lenient.stdout
    assert "no model is the champion yet" in lenient.stderr


@pytest.mark.slow
def test_refused_data_stops_the_walk_at_check_data(project_root, tmp_path):
    path = project(project_root, tmp_path, rows=300, **{"data.min_rows": 1_000_000})
    out = cli(path)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    assert "the pipeline failed at check-data" in out.stderr
    assert journal(path) == ["validate-data", "check-data"]
    assert "FAILED" in out.stdout and "row_count" in out.stdout
    assert not (tmp_path / "data/split").exists()
