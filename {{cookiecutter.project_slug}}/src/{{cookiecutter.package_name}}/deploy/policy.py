"""Policy checks on rendered manifests: what a schema cannot say.

Images tagged (never ``latest``) and from the contract; requests, limits, probes and a hardened
securityContext on every container; selectors that select something; Services, autoscalers,
budgets, routes and rollouts pointing at things that exist; network rules naming their peers,
egress only on allowed ports; the namespace enforcing the `restricted` Pod Security profile;
Prometheus queries only on metrics the server exports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SystemConfig
from .manifests import CLUSTER_SCOPED_KINDS, Resource, split_image
from .promql import metric_names
from .render import ALERT_THRESHOLDS, GATE_THRESHOLDS
from .report import Finding
from .server import EGRESS_PORTS, LIVENESS_PATH, READINESS_PATH, SERVER_PORT, is_server_metric

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Rollout"}
RESOURCE_FIELDS = [(kind, res) for kind in ("requests", "limits") for res in ("cpu", "memory")]


@dataclass
class Context:
    """The documents of one target, the documents its references may point at, the contract."""

    target: str
    resources: list[Resource]
    cfg: SystemConfig
    deploy_dir: Path
    references: list[Resource] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def fail(self, res: Resource, path: str, message: str) -> None:
        self.findings.append(
            Finding(self.target, res.kind, res.name, path, message, self.source(res))
        )

    def source(self, res: Resource) -> str:
        try:
            return str(res.source.resolve().relative_to(self.deploy_dir.resolve()))
        except ValueError:
            return str(res.source)

    def all(self) -> list[Resource]:
        """This target's documents, then the reference documents it does not define itself."""
        seen = {(r.kind, r.name) for r in self.resources}
        return self.resources + [r for r in self.references if (r.kind, r.name) not in seen]

    def find(self, kind: str, name: str) -> Resource | None:
        return next((r for r in self.all() if r.kind == kind and r.name == name), None)


@dataclass
class PodTemplate:
    owner: Resource
    path: str
    labels: dict[str, str]
    spec: dict[str, Any]


def pod_templates(resources: list[Resource]) -> list[PodTemplate]:
    """Every pod template of the workloads (and bare pods) in ``resources``."""
    out = []
    for res in resources:
        spec = res.doc.get("spec") or {}
        if res.kind in WORKLOAD_KINDS and isinstance(spec.get("template"), dict):
            template, path = spec["template"], "spec.template"
        elif res.kind == "CronJob":
            template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}
            path = "spec.jobTemplate.spec.template"
        elif res.kind == "Pod":
            template, path = res.doc, ""
        else:
            continue
        labels = (template.get("metadata") or {}).get("labels") or {}
        out.append(PodTemplate(res, path, dict(labels), template.get("spec") or {}))
    return out


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _container_ports(template: PodTemplate) -> list[dict]:
    return [p for c in template.spec.get("containers") or [] for p in c.get("ports") or []]


def _resolves(port: Any, template: PodTemplate) -> int | None:
    """The container port number a Service/NetworkPolicy port refers to, or None."""
    for p in _container_ports(template):
        if (isinstance(port, str) and p.get("name") == port) or p.get("containerPort") == port:
            return p.get("containerPort")
    return None


def run_all(ctx: Context) -> list[Finding]:
    """Every policy check on one target; returns its findings."""
    templates = pod_templates(ctx.all())
    for template in pod_templates(ctx.resources):
        check_pod(ctx, template)
    check_selectors(ctx)
    check_services(ctx, templates)
    check_scaling(ctx, templates)
    check_network_policies(ctx, templates)
    check_mesh(ctx, templates)
    check_rollouts(ctx)
    check_monitoring(ctx)
    check_namespaces(ctx)
    return ctx.findings


def check_pod(ctx: Context, template: PodTemplate) -> None:
    """Images, resources, probes and the hardened securityContext of every container."""
    res, spec = template.owner, template.spec
    pod_security = spec.get("securityContext") or {}
    empty_dirs = {v.get("name") for v in spec.get("volumes") or [] if "emptyDir" in v}
    for field_name in ("containers", "initContainers"):
        for i, container in enumerate(spec.get(field_name) or []):
            path = _join(template.path, "spec", f"{field_name}[{i}]")
            check_image(ctx, res, path, container)
            for kind, resource in RESOURCE_FIELDS:
                if not ((container.get("resources") or {}).get(kind) or {}).get(resource):
                    ctx.fail(
                        res,
                        f"{path}.resources.{kind}.{resource}",
                        f"container '{container.get('name')}' has no {kind}.{resource}",
                    )
            if field_name == "containers":
                check_probes(ctx, res, path, container)
            check_security(ctx, res, path, container, pod_security, empty_dirs)


def check_image(ctx: Context, res: Resource, path: str, container: dict) -> None:
    image = str(container.get("image", ""))
    repo, tag, digest = split_image(image)
    if not tag and not digest:
        ctx.fail(res, f"{path}.image", f"image '{image}' has no tag")
    elif tag == "latest":
        ctx.fail(res, f"{path}.image", f"image '{image}' uses the tag 'latest'")
    serves = any(p.get("containerPort") == SERVER_PORT for p in container.get("ports") or [])
    if serves and repo != ctx.cfg.platform.image:
        ctx.fail(
            res,
            f"{path}.image",
            f"image '{image}' is not the contract's platform.image '{ctx.cfg.platform.image}'",
        )


def check_probes(ctx: Context, res: Resource, path: str, container: dict) -> None:
    serves = any(p.get("containerPort") == SERVER_PORT for p in container.get("ports") or [])
    for probe, expected in (("readinessProbe", READINESS_PATH), ("livenessProbe", LIVENESS_PATH)):
        spec = container.get(probe)
        if not spec:
            ctx.fail(res, f"{path}.{probe}", f"container '{container.get('name')}' has no {probe}")
        elif serves and (spec.get("httpGet") or {}).get("path") != expected:
            ctx.fail(res, f"{path}.{probe}.httpGet.path", f"{probe} must GET {expected}")


def check_security(
    ctx: Context, res: Resource, path: str, container: dict, pod: dict, empty_dirs: set
) -> None:
    sc = container.get("securityContext") or {}
    name = container.get("name")

    def effective(key: str) -> Any:
        return sc[key] if key in sc else pod.get(key)

    rules = [
        ("runAsNonRoot", effective("runAsNonRoot") is True, "must be true"),
        ("readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem") is True, "must be true"),
        ("allowPrivilegeEscalation", sc.get("allowPrivilegeEscalation") is False, "must be false"),
        (
            "capabilities.drop",
            "ALL" in ((sc.get("capabilities") or {}).get("drop") or []),
            "must include ALL",
        ),
        (
            "seccompProfile.type",
            (effective("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost"),
            "must be RuntimeDefault",
        ),
    ]
    for key, ok, rule in rules:
        if not ok:
            ctx.fail(
                res,
                f"{path}.securityContext.{key}",
                f"container '{name}': securityContext.{key} {rule}",
            )
    if sc.get("readOnlyRootFilesystem") is True:
        mounts = {m.get("name") for m in container.get("volumeMounts") or []}
        if not mounts & empty_dirs:
            ctx.fail(
                res,
                f"{path}.volumeMounts",
                f"container '{name}' has a read-only root but no emptyDir for temporary files",
            )


def check_selectors(ctx: Context) -> None:
    """Each workload's selector, and each of its spread constraints, selects its own pods."""
    for template in pod_templates(ctx.resources):
        res = template.owner
        # A constraint that selects other pods spreads these by counting those.
        for i, spread in enumerate(template.spec.get("topologySpreadConstraints") or []):
            wanted = (spread.get("labelSelector") or {}).get("matchLabels") or {}
            if not _matches(wanted, template.labels):
                ctx.fail(
                    res,
                    _join(template.path, f"spec.topologySpreadConstraints[{i}].labelSelector"),
                    f"selector {wanted} does not match the pod labels {template.labels}",
                )
        selector = ((res.doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if (
            res.kind in WORKLOAD_KINDS
            and res.kind != "Job"
            and not _matches(selector, template.labels)
        ):
            ctx.fail(
                res,
                "spec.selector.matchLabels",
                f"selector {selector} does not match the pod labels {template.labels}",
            )


def check_services(ctx: Context, templates: list[PodTemplate]) -> None:
    """Each Service selects pods and targets a port those pods expose."""
    for res in ctx.resources:
        if res.kind != "Service":
            continue
        spec = res.doc.get("spec") or {}
        selector = spec.get("selector") or {}
        selected = [t for t in templates if _matches(selector, t.labels)]
        if not selected:
            ctx.fail(res, "spec.selector", f"selector {selector} matches no pod template")
            continue
        for i, port in enumerate(spec.get("ports") or []):
            target = port.get("targetPort", port.get("port"))
            for template in selected:
                if _resolves(target, template) is None:
                    ctx.fail(
                        res,
                        f"spec.ports[{i}].targetPort",
                        f"targetPort '{target}' matches no container port of "
                        f"{template.owner.kind}/{template.owner.name}",
                    )


def check_scaling(ctx: Context, templates: list[PodTemplate]) -> None:
    """Autoscalers target an existing workload; disruption budgets select pods."""
    for res in ctx.resources:
        spec = res.doc.get("spec") or {}
        if res.kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            if ctx.find(ref.get("kind", ""), ref.get("name", "")) is None:
                ctx.fail(
                    res,
                    "spec.scaleTargetRef",
                    f"targets {ref.get('kind')}/{ref.get('name')}, which is not rendered",
                )
            if spec.get("maxReplicas", 0) < spec.get("minReplicas", 1):
                ctx.fail(res, "spec.maxReplicas", "maxReplicas is below minReplicas")
        elif res.kind == "PodDisruptionBudget":
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            if not any(_matches(selector, t.labels) for t in templates):
                ctx.fail(res, "spec.selector", f"selector {selector} matches no pod template")


def open_peer(peer: Any) -> str:
    """Why a NetworkPolicy peer admits more than named callers or endpoints ("" if it does not).

    An empty ``namespaceSelector`` selects every namespace (whatever the pod labels: anyone who
    may create a pod can set those); an ``ipBlock`` of prefix length 0 is every address.
    """
    if not isinstance(peer, dict) or not peer:
        return "an empty peer selects everything"
    if "namespaceSelector" in peer and not _selects_something(peer["namespaceSelector"]):
        return "namespaceSelector {} selects every namespace"
    cidr = str((peer.get("ipBlock") or {}).get("cidr", ""))
    if cidr.endswith("/0"):
        return f"ipBlock {cidr} is every address"
    return ""


def _selects_something(selector: Any) -> bool:
    return isinstance(selector, dict) and bool(
        selector.get("matchLabels") or selector.get("matchExpressions")
    )


def _check_peers(ctx: Context, res: Resource, path: str, peers: Any, direction: str) -> None:
    if not peers:
        who = "every pod and address" if direction == "from" else "every destination"
        ctx.fail(res, f"{path}.{direction}", f"a rule without `{direction}` admits {who}")
        return
    for k, peer in enumerate(peers):
        reason = open_peer(peer)
        if reason:
            ctx.fail(res, f"{path}.{direction}[{k}]", f"open peer: {reason}")


def check_network_policies(ctx: Context, templates: list[PodTemplate]) -> None:
    """Ingress only from named callers on the serving port; egress only to named endpoints on
    EGRESS_PORTS."""
    for res in ctx.resources:
        if res.kind != "NetworkPolicy":
            continue
        spec = res.doc.get("spec") or {}
        selector = (spec.get("podSelector") or {}).get("matchLabels") or {}
        selected = [t for t in templates if _matches(selector, t.labels)]
        if not selected:
            ctx.fail(res, "spec.podSelector", f"selector {selector} matches no pod template")
        if set(spec.get("policyTypes") or []) != {"Ingress", "Egress"}:
            ctx.fail(res, "spec.policyTypes", "must restrict both Ingress and Egress")
        for i, rule in enumerate(spec.get("ingress") or []):
            _check_peers(ctx, res, f"spec.ingress[{i}]", rule.get("from"), "from")
            ports = rule.get("ports") or []
            if not ports:
                ctx.fail(
                    res, f"spec.ingress[{i}]", "an ingress rule without ports opens every port"
                )
            for j, port in enumerate(ports):
                value = port.get("port")
                numbers = (
                    {value} if isinstance(value, int) else {_resolves(value, t) for t in selected}
                )
                if numbers != {SERVER_PORT}:
                    ctx.fail(
                        res,
                        f"spec.ingress[{i}].ports[{j}]",
                        f"ingress port '{value}' is not the serving port {SERVER_PORT}",
                    )
        for i, rule in enumerate(spec.get("egress") or []):
            _check_peers(ctx, res, f"spec.egress[{i}]", rule.get("to"), "to")
            ports = rule.get("ports") or []
            if not ports:
                ctx.fail(res, f"spec.egress[{i}]", "an egress rule without ports opens every port")
            for j, port in enumerate(ports):
                if port.get("port") not in EGRESS_PORTS or "endPort" in port:
                    ctx.fail(
                        res,
                        f"spec.egress[{i}].ports[{j}]",
                        f"egress port '{port.get('port')}' is not one of EGRESS_PORTS "
                        f"{sorted(EGRESS_PORTS)}",
                    )


def _service_for(ctx: Context, host: str) -> Resource | None:
    short = host.split(".", 1)[0]
    return ctx.find("Service", short)


def _subsets(ctx: Context, host: str) -> dict[str, dict]:
    short = host.split(".", 1)[0]
    out: dict[str, dict] = {}
    for res in ctx.all():
        if (
            res.kind == "DestinationRule"
            and str((res.doc.get("spec") or {}).get("host", "")).split(".", 1)[0] == short
        ):
            for subset in res.doc["spec"].get("subsets") or []:
                out[subset.get("name")] = subset.get("labels") or {}
    return out


def check_mesh(ctx: Context, templates: list[PodTemplate]) -> None:
    """VirtualServices route to Services and subsets that exist; subsets select pods."""
    for res in ctx.resources:
        spec = res.doc.get("spec") or {}
        if res.kind == "DestinationRule":
            if _service_for(ctx, str(spec.get("host", ""))) is None:
                ctx.fail(res, "spec.host", f"host '{spec.get('host')}' is no rendered Service")
            for i, subset in enumerate(spec.get("subsets") or []):
                labels = subset.get("labels") or {}
                if labels and not any(_matches(labels, t.labels) for t in templates):
                    ctx.fail(
                        res,
                        f"spec.subsets[{i}].labels",
                        f"subset '{subset.get('name')}' selects no pod template",
                    )
        if res.kind != "VirtualService":
            continue
        for i, route in enumerate(spec.get("http") or []):
            destinations = [
                (f"spec.http[{i}].route[{j}].destination", d.get("destination") or {})
                for j, d in enumerate(route.get("route") or [])
            ]
            if route.get("mirror"):
                destinations.append((f"spec.http[{i}].mirror", route["mirror"]))
            for path, dest in destinations:
                host = str(dest.get("host", ""))
                if _service_for(ctx, host) is None:
                    ctx.fail(res, f"{path}.host", f"host '{host}' is no rendered Service")
                elif dest.get("subset") and dest["subset"] not in _subsets(ctx, host):
                    ctx.fail(
                        res,
                        f"{path}.subset",
                        f"subset '{dest['subset']}' is in no DestinationRule for '{host}'",
                    )
            weights = [d.get("weight") for d in route.get("route") or []]
            if len(weights) > 1 and sum(w or 0 for w in weights) != 100:
                ctx.fail(res, f"spec.http[{i}].route", f"weights {weights} do not add up to 100")


def dig(node: Any, *keys: str) -> Any:
    """``node[k1][k2]...``, or an empty mapping where a level is missing."""
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return {}
    return node


def check_rollouts(ctx: Context) -> None:
    """A Rollout's workload, routing objects and analysis templates exist and fit together."""
    for res in ctx.resources:
        if res.kind != "Rollout":
            continue
        if dig(res.doc, "spec", "workloadRef"):
            _check_workload_ref(ctx, res)
        istio = dig(res.doc, "spec", "strategy", "canary", "trafficRouting", "istio")
        _check_istio_routing(ctx, res, istio)
        for i, step in enumerate(dig(res.doc, "spec", "strategy", "canary").get("steps") or []):
            if step.get("analysis"):
                path = f"spec.strategy.canary.steps[{i}].analysis"
                _check_analysis_step(ctx, res, path, step["analysis"])


def _check_workload_ref(ctx: Context, res: Resource) -> None:
    ref = dig(res.doc, "spec", "workloadRef")
    workload = ctx.find(ref.get("kind", ""), ref.get("name", ""))
    if workload is None:
        ctx.fail(res, "spec.workloadRef", f"{ref.get('kind')}/{ref.get('name')} is not rendered")
        return
    selector = dig(res.doc, "spec", "selector", "matchLabels")
    labels = dig(workload.doc, "spec", "template", "metadata", "labels")
    if not _matches(selector, labels):
        ctx.fail(
            res,
            "spec.selector.matchLabels",
            f"selector {selector} does not match the pods of {workload.kind}/{workload.name}",
        )


def _check_istio_routing(ctx: Context, res: Resource, istio: dict) -> None:
    path = "spec.strategy.canary.trafficRouting.istio"
    vs_ref = istio.get("virtualService") or {}
    if vs_ref:
        vs = ctx.find("VirtualService", vs_ref.get("name", ""))
        if vs is None:
            ctx.fail(
                res,
                f"{path}.virtualService",
                f"VirtualService '{vs_ref.get('name')}' is not rendered",
            )
        else:
            names = {route.get("name") for route in dig(vs.doc, "spec").get("http") or []}
            for route in set(vs_ref.get("routes") or []) - names:
                ctx.fail(
                    res,
                    f"{path}.virtualService.routes",
                    f"route '{route}' is not in VirtualService '{vs.name}'",
                )
    dr_ref = istio.get("destinationRule") or {}
    if dr_ref:
        dr = ctx.find("DestinationRule", dr_ref.get("name", ""))
        if dr is None:
            ctx.fail(
                res,
                f"{path}.destinationRule",
                f"DestinationRule '{dr_ref.get('name')}' is not rendered",
            )
            return
        subsets = {subset.get("name") for subset in dig(dr.doc, "spec").get("subsets") or []}
        for key in ("canarySubsetName", "stableSubsetName"):
            if dr_ref.get(key) not in subsets:
                ctx.fail(
                    res,
                    f"{path}.destinationRule.{key}",
                    f"subset '{dr_ref.get(key)}' is not in DestinationRule '{dr.name}'",
                )


def _check_analysis_step(ctx: Context, res: Resource, path: str, analysis: dict) -> None:
    given = {a.get("name") for a in analysis.get("args") or []}
    for j, ref in enumerate(analysis.get("templates") or []):
        template = ctx.find("AnalysisTemplate", ref.get("templateName", ""))
        if template is None:
            ctx.fail(
                res,
                f"{path}.templates[{j}]",
                f"AnalysisTemplate '{ref.get('templateName')}' is not rendered",
            )
            continue
        for arg in (template.doc.get("spec") or {}).get("args") or []:
            needed = "value" not in arg and "valueFrom" not in arg
            if needed and arg.get("name") not in given:
                ctx.fail(
                    res,
                    f"{path}.args",
                    f"AnalysisTemplate '{template.name}' needs argument '{arg.get('name')}'",
                )


def queries(res: Resource) -> Iterator[tuple[str, str]]:
    """(path, PromQL) of every query in a PrometheusRule or AnalysisTemplate."""
    spec = res.doc.get("spec") or {}
    if res.kind == "PrometheusRule":
        for g, group in enumerate(spec.get("groups") or []):
            for r, rule in enumerate(group.get("rules") or []):
                yield f"spec.groups[{g}].rules[{r}].expr", str(rule.get("expr", ""))
    elif res.kind == "AnalysisTemplate":
        for m, metric in enumerate(spec.get("metrics") or []):
            prometheus = (metric.get("provider") or {}).get("prometheus")
            if prometheus:
                yield (
                    f"spec.metrics[{m}].provider.prometheus.query",
                    str(prometheus.get("query", "")),
                )


def check_monitoring(ctx: Context) -> None:
    """Queries use server metrics only; the contract's alerts and gates are all there."""
    for res in ctx.resources:
        if res.kind not in ("PrometheusRule", "AnalysisTemplate", "ServiceMonitor"):
            continue
        spec = res.doc.get("spec") or {}
        if res.kind == "ServiceMonitor":
            _check_service_monitor(ctx, res, spec)
            continue
        recorded = {r.get("record") for g in spec.get("groups") or [] for r in g.get("rules") or []}
        for path, query in queries(res):
            for name in sorted(metric_names(query)):
                if not is_server_metric(name) and name not in recorded:
                    ctx.fail(
                        res,
                        path,
                        f"queries unknown metric '{name}' (not in REQUIRED_SERVER_METRICS)",
                    )
        if res.kind == "PrometheusRule":
            rules = {
                r.get("alert"): r for g in spec.get("groups") or [] for r in g.get("rules") or []
            }
            for alert in ALERT_THRESHOLDS:
                if alert not in rules:
                    ctx.fail(res, "spec.groups", f"alert '{alert}' of the contract is missing")
            for alert, rule in rules.items():
                annotations = rule.get("annotations") or {}
                if alert and not (annotations.get("summary") and annotations.get("runbook")):
                    ctx.fail(res, "spec.groups", f"alert '{alert}' needs a summary and a runbook")
        else:
            names = {m.get("name") for m in spec.get("metrics") or []}
            for gate in GATE_THRESHOLDS:
                if gate not in names:
                    ctx.fail(res, "spec.metrics", f"gate '{gate}' of the contract is missing")


def _check_service_monitor(ctx: Context, res: Resource, spec: dict) -> None:
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    services = [
        r
        for r in ctx.all()
        if r.kind == "Service"
        and _matches(selector, (r.doc.get("metadata") or {}).get("labels") or {})
    ]
    if not services:
        ctx.fail(res, "spec.selector", f"selector {selector} matches no rendered Service")
        return
    port_names = {
        p.get("name") for s in services for p in (s.doc.get("spec") or {}).get("ports") or []
    }
    for i, endpoint in enumerate(spec.get("endpoints") or []):
        if endpoint.get("port") and endpoint["port"] not in port_names:
            ctx.fail(
                res,
                f"spec.endpoints[{i}].port",
                f"port '{endpoint['port']}' is no port name of the selected Service",
            )


ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


def check_namespaces(ctx: Context) -> None:
    """Namespaces enforce the `restricted` Pod Security profile; every namespaced document lands
    in the contract's namespace (one finding per target)."""
    for res in ctx.resources:
        labels = (res.doc.get("metadata") or {}).get("labels") or {}
        if res.kind == "Namespace" and labels.get(ENFORCE_LABEL) != "restricted":
            ctx.fail(
                res,
                f"metadata.labels.{ENFORCE_LABEL}",
                f"must be 'restricted' (is {labels.get(ENFORCE_LABEL)!r}): warn and audit "
                "alone admit pods that break the profile",
            )
    wanted = ctx.cfg.platform.namespace
    wrong = [
        r for r in ctx.resources if r.kind not in CLUSTER_SCOPED_KINDS and r.namespace != wanted
    ]
    if wrong:
        more = f" (and {len(wrong) - 1} more documents)" if len(wrong) > 1 else ""
        ctx.fail(
            wrong[0],
            "metadata.namespace",
            f"namespace '{wrong[0].namespace}' is not the contract's platform.namespace "
            f"'{wanted}'{more}",
        )
