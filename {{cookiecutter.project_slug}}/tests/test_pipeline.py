"""The Kubeflow pipeline: real local runs (kfp.local, one process per task), compile, submit.

Each local run trains on a small generated sample (2 Optuna trials), in a temporary project
(its own contract copy, MLflow sqlite store, Optuna and account-store databases). The journal the
steps write says which tasks really ran: the promotion branch when the gate passed, the
else branch when it failed, never both and never neither (kfp's condition trap).
"""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from rich.console import Console
from sample_project import scaled_rows
from typer.testing import CliRunner

from {{cookiecutter.package_name}} import __version__
from {{cookiecutter.package_name}}.config import load_config
from {{cookiecutter.package_name}}.models import registry
from {{cookiecutter.package_name}}.pipeline import run as runner
from {{cookiecutter.package_name}}.pipeline import summary
from {{cookiecutter.package_name}}.pipeline.dag import ELSE_BRANCH, PROMOTION_BRANCH, TASKS
from {{cookiecutter.package_name}}.pipeline.pipeline import (
    CACHED,
    RETRIED,
    default_image,
    pipeline_name,
    secret_name,
)

ROWS, TRIALS = scaled_rows(2000), 2
BEFORE_GATE = TASKS[: TASKS.index("evaluate-model") + 1]


def contract_copy(project_root, folder: Path, name: str, **changes) -> Path:
    """The project's contract with ``changes`` (dotted keys), saved as folder/configs/name.yaml.

    Every copy in one folder shares its root: one MLflow store, Optuna and account databases.
    """
    data = yaml.safe_load((project_root / "configs" / "system.yaml").read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[key] = value
    path = folder / "configs" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A project folder of the module's own; MLFLOW_TRACKING_URI from the shell is ignored."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield tmp_path_factory.mktemp("pipeline-project")


def local_run(path: Path, **arguments):
    cfg = load_config(path)
    size = {} if "data_uri" in arguments else {"rows": ROWS}
    arguments = {**size, "trials": TRIALS, **arguments}
    return cfg, runner.run_local(cfg, path, arguments=arguments, echo=None)


@pytest.fixture(scope="module")
def passed(project_root, workspace):
    # Targets below the positive rate: any sensible model meets them, so the gate passes.
    path = contract_copy(
        project_root,
        workspace,
        "lenient",
        **{"metrics.offline.target_precision": 0.2, "metrics.offline.target_recall": 0.5},
    )
    return local_run(path)


@pytest.fixture(scope="module")
def gate_failed(project_root, workspace):
    # Perfect precision and recall on held-out data: no model meets this contract.
    path = contract_copy(
        project_root,
        workspace,
        "impossible",
        **{
            "metrics.offline.target_precision": 1.0,
            "metrics.offline.target_recall": 1.0,
            "training.mlflow.registered_model": "gate-test-model",
            "training.optuna.study_name": "gate-test",
        },
    )
    return local_run(path, rows=scaled_rows(1200), trials=1)  # small, with both classes


def table_text(run) -> str:
    console = Console(record=True, width=200)
    console.print(summary.task_table(run))
    return console.export_text()


@pytest.mark.slow
def test_local_run_trains_registers_and_promotes(passed):
    cfg, run = passed
    assert run.succeeded, (run.error, run.log_path)
    for task in BEFORE_GATE + PROMOTION_BRANCH:
        assert run.ran(task), f"{task} did not run: {run.record(task)}"
    for task in ELSE_BRANCH:
        assert run.record(task) is None, f"{task} ran although the gate passed"
    assert run.record("get-data")["metrics"]["rows"] == ROWS
    assert run.record("tune-model")["metrics"]["trials"] == TRIALS
    assert run.record("evaluate-model")["metrics"]["gate"] == "passed"

    # The model is in the project's MLflow store, with the champion alias.
    assert cfg.tracking_uri.startswith("sqlite:///") and str(cfg.root) in cfg.tracking_uri
    decision = run.record("promote-model")["metrics"]
    assert decision["outcome"] == "champion"
    champion = registry.get_version(cfg, registry.CHAMPION)
    assert champion.version == decision["version"]

    served = json.loads(
        (run.output("export-serving-bundle", "serving") / "serving.json").read_text()
    )
    assert served["model_uri"] == champion.uri and "champion" in served["aliases"]
    assert "Gate passed" in run.output("evaluate-model", "report").read_text(encoding="utf-8")
    assert "PASS" in run.output("validate-data", "report").read_text(encoding="utf-8")

    text = table_text(run)
    for task in TASKS:
        assert task in text
    assert "skipped (gate passed)" in text and "best_val_pr_auc" in text
    lines = summary.where_outputs(run, cfg)
    assert any(line.startswith("registry: models:/") for line in lines)
    assert run.run_dir is not None and run.run_dir.is_dir()


@pytest.mark.slow
def test_the_batch_pipeline_scores_a_file_with_the_champion_the_run_promoted(passed, workspace):
    from {{cookiecutter.package_name}}.data import synthetic
    from {{cookiecutter.package_name}}.predlog.store import PredictionLog, log_url

    cfg, run = passed
    assert run.succeeded, (run.error, run.log_path)
    source = workspace / "bucket" / "to-score.parquet"
    source.parent.mkdir(exist_ok=True)
    synthetic.run(cfg, source, rows=300, seed=5, progress=False)
    config_path = workspace / "configs" / "lenient.yaml"
    scoring = runner.run_local(
        cfg, config_path, arguments={"data_uri": f"file://{source}"}, echo=None, batch=True
    )
    assert scoring.succeeded, (scoring.error, scoring.log_path)
    metrics = scoring.record("score-batch")["metrics"]
    champion = registry.get_version(cfg, registry.CHAMPION)
    assert metrics["scored"] == 300 and metrics["model_version"] == champion.version
    predictions = pd.read_parquet(scoring.record("score-batch")["outputs"]["predictions"])
    assert len(predictions) == 300 and set(predictions["model_version"]) == {champion.version}
    with PredictionLog(log_url(cfg)) as log:
        batch_rows = [r for r in log.rows() if r["routing"] == "batch"]
    assert len(batch_rows) == 300


@pytest.mark.slow
def test_failed_gate_ends_the_run_successfully_without_promotion(gate_failed):
    cfg, run = gate_failed
    assert run.succeeded, (run.error, run.log_path)
    for task in BEFORE_GATE + ELSE_BRANCH:
        assert run.ran(task), f"{task} did not run: {run.record(task)}"
    for task in PROMOTION_BRANCH:
        assert run.record(task) is None, f"{task} ran although the gate failed"
    evaluation = run.record("evaluate-model")["metrics"]
    assert evaluation["gate"] == "failed" and evaluation["reasons"]
    note = run.output("report-gate-failure", "note").read_text(encoding="utf-8")
    assert "Not promoted" in note and "below the target" in note
    # Nothing was registered under this contract's model name, so there is no champion.
    with pytest.raises(registry.NoChampionError):
        registry.get_version(cfg, registry.CHAMPION)
    with pytest.raises(registry.RegistryError, match="no version"):
        registry.get_version(cfg, "latest")
    assert "skipped (gate failed)" in table_text(run)


@pytest.mark.slow
def test_validation_failure_fails_the_run_at_validation(project_root, workspace):
    path = contract_copy(project_root, workspace, "strict", **{"data.min_rows": 1_000_000})
    cfg = load_config(path)
    run = runner.run_local(cfg, path, arguments={"rows": 1200, "trials": 1}, echo=None)
    assert not run.succeeded
    assert run.failed_task == "check-data" and "check-data" in run.error
    assert run.record("validate-data")["metrics"]["status"] == "failed"
    assert "data validation failed" in run.record("check-data")["error"]
    for task in TASKS[TASKS.index("split-data") :]:
        assert run.record(task) is None, f"{task} ran on data that failed validation"
    report = run.output("validate-data", "report").read_text(encoding="utf-8")
    assert "FAIL" in report and "row_count" in report
    assert summary.task_status(run, "split-data") == "not run"


@pytest.mark.slow
def test_local_run_trains_on_the_data_an_importer_brings(project_root, workspace):
    from {{cookiecutter.package_name}}.data import synthetic

    path = contract_copy(
        project_root,
        workspace,
        "imported",
        **{"metrics.offline.target_precision": 0.2, "metrics.offline.target_recall": 0.5},
    )
    cfg = load_config(path)
    source = workspace / "bucket" / "records.parquet"
    source.parent.mkdir(exist_ok=True)
    synthetic.run(cfg, source, rows=ROWS, seed=3, progress=False)
    _, run = local_run(path, data_uri=f"file://{source}")
    assert run.succeeded, run.error
    assert run.ran("ingest-data") and run.record("get-data") is None
    record = run.record("ingest-data")
    assert record["metrics"]["rows"] == ROWS
    assert record["metrics"]["source"] == f"file://{source}"


@pytest.fixture(scope="module")
def compiled(cfg, tmp_path_factory):
    path = runner.compile_pipeline(cfg, tmp_path_factory.mktemp("kfp") / "pipeline.yaml")
    return path, list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def test_compiled_yaml_is_a_valid_pipeline_spec(cfg, compiled):
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    path, (spec, platform) = compiled
    # Strict protobuf parse: an unknown or misspelled field fails here.
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == pipeline_name(cfg)

    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["trials"]["defaultValue"] == cfg.training.optuna.trials
    assert parameters["timeout_s"]["defaultValue"] == cfg.training.optuna.timeout_s
    assert parameters["promotion_margin"]["defaultValue"] == cfg.metrics.offline.promotion_margin
    assert parameters["data_source"]["defaultValue"] == "generate"
    assert parameters["mlflow_tracking_uri"]["defaultValue"] == ""

    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {default_image(cfg)}
    assert default_image(cfg).endswith(f":{__version__}")
    for executor in executors.values():
        container = executor["container"]
        assert "pip install" not in " ".join(container["command"])  # the image has everything
        assert container["resources"]["cpuRequest"] > 0
        assert container["resources"]["memoryRequest"] > 0


def test_compiled_yaml_gates_caches_retries_and_reads_the_secret(cfg, compiled):
    _, (spec, platform) = compiled
    text = json.dumps(spec)
    # The gate is a string comparison: no double() for the local evaluator to trip over.
    assert "== 'passed'" in text and "double(" not in text

    tasks = {}

    def collect(dag):
        for name, task in dag.get("tasks", {}).items():
            tasks[name] = task
            inner = spec["components"][task["componentRef"]["name"]].get("dag")
            if inner:
                collect(inner)

    collect(spec["root"]["dag"])
    assert set(TASKS) <= set(tasks)
    for name in TASKS:
        caching = tasks[name].get("cachingOptions", {}).get("enableCache", False)
        assert caching == (name in CACHED), name
        assert ("retryPolicy" in tasks[name]) == (name in RETRIED), name


def test_every_task_that_writes_to_a_store_gets_the_secret(cfg, compiled):
    _, (spec, platform) = compiled
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # The first task checks the stores; the others write to MLflow (evaluate-model logs the
    # test metrics into the tuning run), Optuna's study or the entity store.
    writers = {
        "get-data",
        "build-features",
        "tune-model",
        "evaluate-model",
        "promote-model",
        "export-serving-bundle",
    }
    assert {name.removeprefix("exec-") for name in executors} == writers
    for name in writers:
        [secret] = executors[f"exec-{name}"]["secretAsEnv"]
        assert secret["secretName"] == secret_name(cfg)
        keys = {(k["secretKey"], k["envVar"]) for k in secret["keyToEnv"]}
        for key in ("MLFLOW_TRACKING_URI", "OPTUNA_STORAGE", "ENTITY_STORE_URL"):
            assert (key, key) in keys, (name, key)
        # Optional, so that the first task, not a pod that cannot start, says which key is
        # missing: this field needs a backend >= 2.15 (deploy/kubeflow/README.md).
        assert secret["optional"] is True

    # The MLflow URI parameter reaches every task that talks to MLflow, evaluation included.
    tasks = dict(spec["root"]["dag"]["tasks"])
    for inner in spec["components"].values():
        tasks.update(inner.get("dag", {}).get("tasks", {}))
    for name in ("get-data", "tune-model", "evaluate-model", "promote-model"):
        parameter = tasks[name]["inputs"]["parameters"]["mlflow_tracking_uri"]
        assert "mlflow_tracking_uri" in json.dumps(parameter), name


class FakeClient:
    """Records what our code hands to kfp.Client."""

    def __init__(self, host=None):
        self.host, self.calls = host, []

    def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
        self.calls.append(("run", pipeline_file, kwargs))
        return type("Result", (), {"run_id": "run-1"})()

    def create_experiment(self, name, namespace=None):
        self.calls.append(("experiment", name, {"namespace": namespace}))
        return type("Experiment", (), {"experiment_id": "exp-1"})()

    def create_recurring_run(self, **kwargs):
        self.calls.append(("recurring", kwargs.get("pipeline_package_path"), kwargs))
        return type("Recurring", (), {"recurring_run_id": "rr-1"})()

    def list_recurring_runs(self, **kwargs):
        return type("Page", (), {"recurring_runs": [], "next_page_token": ""})()


def test_submit_hands_the_client_package_arguments_and_experiment(cfg, compiled):
    path, _ = compiled
    client = FakeClient()
    arguments = runner.parse_params(["rows=5000", "promotion_margin=0.01", "data_source=generate"])
    result = runner.submit(
        cfg,
        "http://kfp.example",
        arguments=arguments,
        experiment="nightly",
        package_path=path,
        client=client,
    )
    assert result.run_id == "run-1"
    [(kind, package, kwargs)] = client.calls
    assert kind == "run" and package == str(path)
    assert kwargs["arguments"] == {
        "rows": 5000,
        "promotion_margin": 0.01,
        "data_source": "generate",
    }
    assert kwargs["experiment_name"] == "nightly"
    assert kwargs["run_name"].startswith(pipeline_name(cfg))


def test_schedule_creates_a_six_field_cron_recurring_run(cfg, compiled):
    path, _ = compiled
    client = FakeClient()
    runner.schedule(cfg, None, arguments={"trials": 5}, package_path=path, client=client)
    (_, name, _), (kind, package, kwargs) = client.calls
    assert name == cfg.training.mlflow.experiment
    assert kind == "recurring" and package == str(path)
    assert kwargs["experiment_id"] == "exp-1"
    assert kwargs["cron_expression"] == cfg.training.schedule_cron
    assert len(kwargs["cron_expression"].split()) == 6
    # Scheduled models enter as challenger; live traffic decides their promotion.
    assert kwargs["params"] == {"trials": 5, "promote_to": "challenger"}
    assert kwargs["max_concurrency"] == 1
    assert cfg.training.schedule in kwargs["job_name"]


def test_schedule_twice_refuses_then_replaces_and_sends_the_token(cfg, compiled):
    """The real kfp.Client against a stand-in for the API server (tests/kfp_api.py)."""
    from kfp_api import FakeKfpApi

    path, _ = compiled
    with FakeKfpApi() as api:
        first = runner.schedule(cfg, api.host, package_path=path, token="secret-token")
        assert list(api.recurring_runs) == [first.recurring_run_id]
        sent = api.recurring_runs[first.recurring_run_id]
        assert sent["display_name"] == f"{pipeline_name(cfg)}-{cfg.training.schedule}"
        assert sent["trigger"]["cron_schedule"]["cron"] == cfg.training.schedule_cron
        assert sent["runtime_config"]["parameters"]["promote_to"] == "challenger"

        with pytest.raises(runner.ScheduleExists, match="already exists.*--replace"):
            runner.schedule(cfg, api.host, package_path=path, token="secret-token")
        assert list(api.recurring_runs) == [first.recurring_run_id]  # nothing created

        second = runner.schedule(
            cfg, api.host, package_path=path, token="secret-token", replace=True
        )
        assert list(api.recurring_runs) == [second.recurring_run_id] != [first.recurring_run_id]
        # One experiment, found again by name; every call authenticated.
        assert len(api.experiments) == 1
        assert api.authorizations() == {"Bearer secret-token"}


def test_cli_schedule_refuses_a_second_schedule_unless_replace(project_root, compiled):
    from kfp_api import FakeKfpApi

    from {{cookiecutter.package_name}}.cli.pipeline import app

    path, _ = compiled
    config = str(project_root / "configs" / "system.yaml")
    command = ["schedule", "--package", str(path), "--config", config, "--token", "t"]
    cli = CliRunner()
    with FakeKfpApi() as api:
        assert cli.invoke(app, [*command, "--host", api.host]).exit_code == 0
        again = cli.invoke(app, [*command, "--host", api.host])
        assert again.exit_code == 2 and "already exists" in again.output
        replaced = cli.invoke(app, [*command, "--host", api.host, "--replace"])
        assert replaced.exit_code == 0, replaced.output
        assert len(api.recurring_runs) == 1 and api.authorizations() == {"Bearer t"}


def test_schedule_finds_its_run_beyond_the_first_page(cfg, compiled):
    from kfp_api import FakeKfpApi

    path, _ = compiled
    with FakeKfpApi() as api:
        first = runner.schedule(cfg, api.host, package_path=path)
        experiment = api.recurring_runs[first.recurring_run_id]["experiment_id"]
        for i in range(150):  # other recurring runs of the experiment, listed before ours
            api.recurring_runs[f"other-{i}"] = {
                "display_name": f"other-{i}",
                "experiment_id": experiment,
            }
        api.recurring_runs[first.recurring_run_id] = api.recurring_runs.pop(first.recurring_run_id)
        with pytest.raises(runner.ScheduleExists):
            runner.schedule(cfg, api.host, package_path=path)


def test_the_service_account_token_file_is_read_per_request(cfg, compiled, tmp_path, monkeypatch):
    from kfp_api import FakeKfpApi

    path, _ = compiled
    token = tmp_path / "token"
    token.write_text("first")
    monkeypatch.setenv(runner.TOKEN_PATH_ENV, str(token))
    with FakeKfpApi() as api:
        runner.submit(cfg, api.host, package_path=path)
        assert api.authorizations() == {"Bearer first"}
        token.write_text("rotated")  # the kubelet refreshes the projected token
        api.requests.clear()
        runner.submit(cfg, api.host, package_path=path)
        assert api.authorizations() == {"Bearer rotated"}
        assert len(api.runs) == 2
    monkeypatch.setenv(runner.TOKEN_PATH_ENV, str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="KF_PIPELINES_SA_TOKEN_PATH"):
        runner.submit(cfg, "http://127.0.0.1:9", package_path=path)


def test_the_imported_variant_reads_data_uri_through_an_importer(cfg, tmp_path):
    path = runner.compile_pipeline(cfg, tmp_path / "imported.yaml", imported=True)
    spec, platform = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    assert spec["pipelineInfo"]["name"] == pipeline_name(cfg, imported=True)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert "data_uri" in parameters and not {"data_source", "rows"} & set(parameters)
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["importer"]["inputs"]["parameters"]["uri"] == {
        "componentInputParameter": "data_uri"
    }
    importer = spec["deploymentSpec"]["executors"]["exec-importer"]["importer"]
    assert importer["typeSchema"]["schemaTitle"] == "system.Dataset"
    source = tasks["ingest-data"]["inputs"]["artifacts"]["source"]["taskOutputArtifact"]
    assert source["producerTask"] == "importer"
    raw = tasks["validate-data"]["inputs"]["artifacts"]["raw"]["taskOutputArtifact"]
    assert raw["producerTask"] == "ingest-data" and "get-data" not in tasks
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "exec-ingest-data" in executors  # the first task checks the stores here

    # Parameters select the variant; data_uri and data_source / rows do not mix.
    assert runner.imported(runner.parse_params(["data_uri=s3://bucket/records.parquet"]))
    with pytest.raises(ValueError, match="data_uri replaces data_source"):
        runner.parse_params(["data_uri=s3://b/m.parquet", "data_source=generate"])
    with pytest.raises(ValueError, match="data_uri is empty"):
        runner.parse_params(["data_uri= "])
    client = FakeClient()
    elsewhere = cfg.model_copy(update={"root": tmp_path})  # where it compiles the package
    runner.submit(elsewhere, None, arguments={"data_uri": "s3://b/m.parquet"}, client=client)
    [(_, package, kwargs)] = client.calls
    assert kwargs["run_name"].startswith(pipeline_name(cfg, imported=True))
    assert "importer" in Path(package).read_text(encoding="utf-8")


def test_the_batch_pipeline_imports_records_and_scores_them(cfg, tmp_path):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from {{cookiecutter.package_name}}.pipeline.pipeline import batch_pipeline_name

    path = runner.compile_pipeline(cfg, tmp_path / "batch.yaml", batch=True)
    spec, platform = yaml.safe_load_all(path.read_text(encoding="utf-8"))
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert spec["pipelineInfo"]["name"] == batch_pipeline_name(cfg)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == set(runner.BATCH_PARAMETERS)
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"importer", "score-batch"}
    records = tasks["score-batch"]["inputs"]["artifacts"]["records"]["taskOutputArtifact"]
    assert records["producerTask"] == "importer"
    outputs = spec["components"]["comp-score-batch"]["outputDefinitions"]
    assert outputs["artifacts"]["predictions"]["artifactType"]["schemaTitle"] == "system.Dataset"
    assert set(outputs["parameters"]) == {"scored", "quarantined", "version"}
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "exec-score-batch" in executors  # the stores' URLs come from the Secret
    assert "score-batch" in RETRIED

    with pytest.raises(ValueError, match="needs data_uri"):
        runner.batch_arguments({})
    with pytest.raises(ValueError, match="not trials"):
        runner.batch_arguments({"data_uri": "s3://b/r.parquet", "trials": 2})
    from {{cookiecutter.package_name}}.cli import app

    result = CliRunner().invoke(app, ["pipeline", "run", "--local", "--batch"])
    assert result.exit_code == 2 and "needs data_uri" in result.output
    for mode in (["--local", "--trials", "3"], ["--in-process"]):
        mixed = CliRunner().invoke(
            app, ["pipeline", "run", *mode, "--batch", "-p", "data_uri=file:///r.csv"]
        )
        assert mixed.exit_code == 2 and "belong to the training pipeline" in mixed.output

    # Submitted: the batch package, its run name and only its arguments reach the API.
    client = FakeClient()
    elsewhere = cfg.model_copy(update={"root": tmp_path})
    runner.submit(
        elsewhere, None, arguments={"data_uri": "s3://b/r.parquet"}, client=client, batch=True
    )
    [(_, package, kwargs)] = client.calls
    assert Path(package).name == "pipeline-batch.yaml"
    assert kwargs["run_name"].startswith(batch_pipeline_name(cfg))
    assert kwargs["arguments"] == {"data_uri": "s3://b/r.parquet"}


def test_parameters_are_typed_and_checked():
    assert runner.parse_params(["trials=3", "timeout-s=60"]) == {"trials": 3, "timeout_s": 60}
    with pytest.raises(ValueError, match="unknown pipeline parameter"):
        runner.parse_params(["epochs=3"])
    with pytest.raises(ValueError, match="expected int"):
        runner.parse_params(["rows=many"])
    with pytest.raises(ValueError, match="key=value"):
        runner.parse_params(["rows"])


def test_cli_compile_submit_and_the_local_flag(cfg, project_root, tmp_path, monkeypatch):
    import kfp

    from {{cookiecutter.package_name}}.cli.pipeline import app

    config = str(project_root / "configs" / "system.yaml")
    cli = CliRunner()
    out = tmp_path / "p.yaml"
    result = cli.invoke(app, ["compile", "--out", str(out), "--config", config])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load_all(out.read_text(encoding="utf-8"))

    clients = []
    monkeypatch.setattr(kfp, "Client", lambda host: clients.append(FakeClient(host)) or clients[-1])
    result = cli.invoke(
        app,
        [
            "submit",
            "--host",
            "http://kfp.example",
            "--package",
            str(out),
            "-p",
            "rows=3000",
            "--experiment",
            "exp",
            "--config",
            config,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "run-1" in result.output
    [(_, package, kwargs)] = clients[0].calls
    assert clients[0].host == "http://kfp.example" and package == str(out)
    assert kwargs["arguments"] == {"rows": 3000} and kwargs["experiment_name"] == "exp"

    result = cli.invoke(app, ["submit", "--host", "h", "-p", "nope=1", "--config", config])
    assert result.exit_code == 2 and "unknown pipeline parameter" in result.output
    result = cli.invoke(app, ["run", "--config", config])
    assert result.exit_code == 2 and "--local" in result.output


def test_get_data_ingests_a_file_with_the_same_step(cfg, project_root, tmp_path):
    from types import SimpleNamespace

    from {{cookiecutter.package_name}}.data import synthetic
    from {{cookiecutter.package_name}}.pipeline import steps

    source = tmp_path / "corpus.parquet"
    synthetic.run(cfg, source, rows=300, seed=1, progress=False)
    artifact = SimpleNamespace(path=str(tmp_path / "raw"), metadata={})
    steps.get_data(str(project_root / "configs" / "system.yaml"), str(source), 0, artifact)
    assert artifact.metadata["rows"] == 300 and artifact.metadata["source"] == str(source)
    assert (tmp_path / "raw" / steps.RAW_FILE).is_file()


def test_promotion_margin_parameter_overrides_the_contract(cfg):
    from {{cookiecutter.package_name}}.pipeline import steps

    assert steps.with_margin(cfg, 0.05).metrics.offline.promotion_margin == 0.05
    assert cfg.metrics.offline.promotion_margin != 0.05  # the contract itself is untouched
    with pytest.raises(ValueError, match="promotion_margin"):
        steps.with_margin(cfg, 1.5)


def test_steps_reroot_relative_paths_when_the_contract_is_read_only(
    project_root, tmp_path, monkeypatch
):
    from {{cookiecutter.package_name}}.pipeline import steps

    config = str(project_root / "configs" / "system.yaml")
    assert steps.load(config).root == project_root
    # As in the image: the contract under /etc, the working directory writable.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(steps.os, "access", lambda path, mode: False)
    cfg = steps.load(config)
    assert cfg.root == tmp_path
    assert cfg.sqlite_url("sqlite:///optuna.db") == f"sqlite:///{tmp_path / 'optuna.db'}"
