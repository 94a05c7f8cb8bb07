"""Build a Kustomize folder in Python, as ``kubectl kustomize`` does, for the features used here.

Supported fields: ``resources`` (files and folders), ``configMapGenerator`` (files, literals; the
name gets Kustomize's content-hash suffix unless disabled), ``generatorOptions``, ``patches``
(strategic merge, or JSON 6902 applied with ``jsonpatch``; with or without ``target``),
``namespace``, ``namePrefix``, ``nameSuffix`` and ``images``; then references to renamed
resources (ConfigMap, Secret, ServiceAccount, scale and workload targets) follow the new names.
Steps run in Kustomize's order: resources, generators, patches, namespace, prefix/suffix, images.
Any other field raises :class:`KustomizeError` naming it, so an unsupported feature never passes
unnoticed; a patch that matches nothing is an error too (Kustomize ignores some of those).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "generatorOptions",
    "patches",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "images",
}
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "RuntimeClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "APIService",
}
# Strategic-merge keys of the built-in list fields this project patches; other lists are replaced.
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "ports": ("containerPort", "port"),
    "imagePullSecrets": ("name",),
    "topologySpreadConstraints": ("topologyKey",),
    "hostAliases": ("ip",),
}


# libyaml's loader when PyYAML has it: the same documents, several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml_all(text: str) -> list[Any]:
    """Every document of a YAML text, loaded safely."""
    return list(yaml.load_all(text, Loader=_LOADER))


class KustomizeError(ValueError):
    """A kustomization that cannot be built; the message names the file and the problem."""


@dataclass
class Resource:
    """One built document, with the file it came from and every name it had before."""

    doc: dict[str, Any]
    source: Path
    # Names given up to a suffix, prefix or hash: references holding one of them follow.
    previous_names: list[str] = field(default_factory=list, repr=False)
    # A generated ConfigMap whose name still waits for Kustomize's content-hash suffix.
    needs_hash: bool = field(default=False, repr=False)

    @property
    def kind(self) -> str:
        return self.doc.get("kind", "")

    @property
    def name(self) -> str:
        return self.doc.get("metadata", {}).get("name", "")

    @property
    def namespace(self) -> str | None:
        return self.doc.get("metadata", {}).get("namespace")

    @property
    def group(self) -> str:
        api = self.doc.get("apiVersion", "")
        return api.split("/", 1)[0] if "/" in api else ""


def kustomization_file(folder: Path) -> Path | None:
    """The kustomization file of ``folder``, or None."""
    for name in KUSTOMIZATION_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def build(folder: str | Path) -> list[Resource]:
    """Build the kustomization in ``folder`` into its resources, like ``kubectl kustomize``."""
    root = Path(folder).resolve()
    kfile = kustomization_file(root)
    if kfile is None:
        raise KustomizeError(f"{root}: no kustomization.yaml")
    spec = _load_yaml(kfile)
    if not isinstance(spec, dict):
        raise KustomizeError(f"{kfile}: expected a mapping")
    unknown = sorted(set(spec) - SUPPORTED_FIELDS)
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported kustomization field(s): {', '.join(unknown)}")

    resources: list[Resource] = []
    for entry in spec.get("resources") or []:
        target = root / entry
        if target.is_dir():
            resources.extend(build(target))
        elif target.is_file():
            _inside(root, target, kfile)
            resources.extend(load_resources(target))
        else:
            raise KustomizeError(f"{kfile}: resource '{entry}' not found")
    resources.extend(_generate(spec, root, kfile))
    for patch in spec.get("patches") or []:
        _apply_patch(resources, patch, root, kfile)
    _set_namespace(resources, spec.get("namespace"))
    _rename(resources, spec.get("namePrefix", ""), spec.get("nameSuffix", ""))
    for image in spec.get("images") or []:
        _set_image(resources, image, kfile)
    _hash_generated(resources)
    _fix_references(resources)
    _reject_duplicates(resources, kfile)
    return resources


def load_resources(path: Path) -> list[Resource]:
    """The Kubernetes documents of one YAML file."""
    out = []
    for doc in _load_yaml_all(path):
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc or "name" not in doc.get("metadata", {}):
            raise KustomizeError(f"{path}: every document needs kind and metadata.name")
        out.append(Resource(doc=doc, source=path))
    return out


def _load_yaml(path: Path) -> Any:
    docs = _load_yaml_all(path)
    return docs[0] if docs else None


def _load_yaml_all(path: Path) -> list[Any]:
    try:
        return parse_yaml_all(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{path}: not valid YAML: {exc}") from exc


def _inside(root: Path, path: Path, kfile: Path) -> None:
    # Kustomize's default load restrictor: files must live in or below the kustomization root.
    if not path.resolve().is_relative_to(root):
        raise KustomizeError(f"{kfile}: file '{path}' is not in or below {root}")


def _generate(spec: dict, root: Path, kfile: Path) -> list[Resource]:
    global_options = spec.get("generatorOptions") or {}
    out = []
    for gen in spec.get("configMapGenerator") or []:
        unknown = sorted(set(gen) - {"name", "files", "literals", "options", "behavior"})
        if unknown or gen.get("behavior", "create") != "create":
            raise KustomizeError(f"{kfile}: unsupported configMapGenerator field(s): {unknown}")
        data: dict[str, str] = {}
        for item in gen.get("files") or []:
            key, _, rel = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
            path = root / rel
            _inside(root, path, kfile)
            if not path.is_file():
                raise KustomizeError(f"{kfile}: configMapGenerator file '{rel}' not found")
            data[key] = path.read_text(encoding="utf-8")
        for item in gen.get("literals") or []:
            key, _, value = item.partition("=")
            data[key] = value
        options = {**global_options, **(gen.get("options") or {})}
        metadata: dict[str, Any] = {"name": gen["name"]}
        for key in ("labels", "annotations"):
            if options.get(key):
                metadata[key] = dict(options[key])
        doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
        needs_hash = not options.get("disableNameSuffixHash")
        out.append(Resource(doc, source=kfile, needs_hash=needs_hash))
    return out


def configmap_hash(name: str, data: dict[str, str]) -> str:
    """Kustomize's name suffix for a ConfigMap: sha256 of its Go-JSON encoding, 10 characters."""
    encoded = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": name},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    # Go's encoding/json escapes these; the hash must see the same bytes.
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        encoded = encoded.replace(char, escape)
    encoded = encoded.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    digest = hashlib.sha256(encoded.encode("utf-8")).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _apply_patch(resources: list[Resource], entry: dict, root: Path, kfile: Path) -> None:
    unknown = sorted(set(entry) - {"path", "patch", "target"})
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported patch field(s): {', '.join(unknown)}")
    if "patch" in entry:
        text, where = entry["patch"], f"{kfile} (inline patch)"
    else:
        path = root / entry["path"]
        _inside(root, path, kfile)
        if not path.is_file():
            raise KustomizeError(f"{kfile}: patch file '{entry['path']}' not found")
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        docs = [d for d in parse_yaml_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{where}: not valid YAML: {exc}") from exc
    target = entry.get("target")
    if len(docs) == 1 and isinstance(docs[0], list):
        if not target:
            raise KustomizeError(f"{where}: a JSON 6902 patch needs a target")
        matched = _select(resources, target, where)
        for res in matched:
            res.doc = _json6902(res.doc, docs[0], where)
        return
    for patch in docs:
        if not isinstance(patch, dict):
            raise KustomizeError(f"{where}: a strategic-merge patch must be a mapping")
        if target:
            matched = _select(resources, target, where)
        else:
            meta = patch.get("metadata", {})
            selector = {"kind": patch.get("kind"), "name": re.escape(meta.get("name", ""))}
            matched = _select(resources, selector, where)
            if len(matched) > 1:
                raise KustomizeError(f"{where}: patch matches {len(matched)} resources")
        for res in matched:
            res.doc = strategic_merge(res.doc, patch, builtin=_is_builtin(res.doc))


def _select(resources: list[Resource], target: dict, where: str) -> list[Resource]:
    unknown = sorted(set(target) - {"group", "version", "kind", "name", "namespace"})
    if unknown:
        raise KustomizeError(f"{where}: unsupported target field(s): {', '.join(unknown)}")
    matched = []
    for res in resources:
        api = res.doc.get("apiVersion", "")
        version = api.rsplit("/", 1)[-1]
        if target.get("kind") and res.kind != target["kind"]:
            continue
        if "group" in target and res.group != (target["group"] or ""):
            continue
        if target.get("version") and version != target["version"]:
            continue
        if target.get("namespace") and res.namespace != target["namespace"]:
            continue
        if target.get("name") and not re.fullmatch(target["name"], res.name):
            continue
        matched.append(res)
    if not matched:
        raise KustomizeError(f"{where}: patch target {target} matches no resource")
    return matched


def _json6902(doc: dict, ops: list, where: str) -> dict:
    import jsonpatch
    import jsonpointer

    try:
        return jsonpatch.apply_patch(doc, ops)
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise KustomizeError(f"{where}: JSON 6902 patch failed: {exc}") from exc


def _is_builtin(doc: dict) -> bool:
    api = doc.get("apiVersion", "")
    group = api.split("/", 1)[0] if "/" in api else ""
    return "." not in group or group.endswith(".k8s.io")


def strategic_merge(base: Any, patch: Any, *, builtin: bool = True) -> Any:
    """Merge ``patch`` into ``base`` the way a strategic-merge patch does.

    Mappings merge recursively and ``null`` deletes a key. Lists of built-in kinds listed in
    :data:`MERGE_KEYS` merge item by item on their key; other lists (and every list of a
    custom resource, which has no merge schema) are replaced.
    """
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"unsupported strategic-merge directive '{key}'")
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = strategic_merge(out[key], value, builtin=builtin)
        elif (
            builtin
            and key in MERGE_KEYS
            and isinstance(value, list)
            and isinstance(out.get(key), list)
        ):
            out[key] = _merge_list(out[key], value, MERGE_KEYS[key], builtin)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(base: list, patch: list, keys: tuple[str, ...], builtin: bool) -> list:
    items = [i for i in patch if isinstance(i, dict)]
    key = next((k for k in keys if items and all(k in i for i in items)), None)
    if key is None:
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for item in items:
        index = next(
            (n for n, b in enumerate(out) if isinstance(b, dict) and b.get(key) == item[key]), None
        )
        if index is None:
            out.append(copy.deepcopy(item))
        else:
            out[index] = strategic_merge(out[index], item, builtin=builtin)
    return out


def _set_namespace(resources: list[Resource], namespace: str | None) -> None:
    if not namespace:
        return
    for res in resources:
        if res.kind not in CLUSTER_SCOPED_KINDS:
            res.doc.setdefault("metadata", {})["namespace"] = namespace


def _rename(resources: list[Resource], prefix: str, suffix: str) -> None:
    if not prefix and not suffix:
        return
    for res in resources:
        if res.kind not in CLUSTER_SCOPED_KINDS:
            res.previous_names.append(res.name)
            res.doc["metadata"]["name"] = f"{prefix}{res.name}{suffix}"


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``repo[:tag][@digest]`` as (repo, tag, digest); a registry port is not a tag."""
    rest, _, digest = image.partition("@")
    repo, tag = rest, None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        repo, tag = rest[:colon], rest[colon + 1 :]
    return repo, tag, digest or None


def _set_image(resources: list[Resource], entry: dict, kfile: Path) -> None:
    unknown = sorted(set(entry) - {"name", "newName", "newTag", "digest"})
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported images field(s): {', '.join(unknown)}")
    for res in resources:
        for container in _containers(res.doc):
            repo, tag, digest = split_image(str(container.get("image", "")))
            if repo != entry["name"]:
                continue
            repo = entry.get("newName", repo)
            if entry.get("newTag") is not None:
                tag = str(entry["newTag"])
            if entry.get("digest"):
                tag, digest = None, entry["digest"]
            container["image"] = (
                repo + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
            )


def _containers(node: Any):
    # Every container in any pod spec of the document (Deployment, Rollout, CronJob, ...).
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _hash_generated(resources: list[Resource]) -> None:
    for res in resources:
        if res.needs_hash:
            res.previous_names.append(res.name)
            res.doc["metadata"]["name"] = f"{res.name}-{configmap_hash(res.name, res.doc['data'])}"
            res.needs_hash = False


def references(doc: dict):
    """Name references in ``doc``: (holder mapping, key, referenced kind) triples."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "HorizontalPodAutoscaler" and isinstance(spec.get("scaleTargetRef"), dict):
        ref = spec["scaleTargetRef"]
        yield ref, "name", ref.get("kind")
    if kind == "Rollout" and isinstance(spec.get("workloadRef"), dict):
        ref = spec["workloadRef"]
        yield ref, "name", ref.get("kind")
    for pod in _pod_specs(doc):
        if "serviceAccountName" in pod:
            yield pod, "serviceAccountName", "ServiceAccount"
        for secret in pod.get("imagePullSecrets") or []:
            yield secret, "name", "Secret"
        for volume in pod.get("volumes") or []:
            if isinstance(volume.get("configMap"), dict):
                yield volume["configMap"], "name", "ConfigMap"
            if isinstance(volume.get("secret"), dict):
                yield volume["secret"], "secretName", "Secret"
            for source in (volume.get("projected") or {}).get("sources") or []:
                if isinstance(source.get("configMap"), dict):
                    yield source["configMap"], "name", "ConfigMap"
                if isinstance(source.get("secret"), dict):
                    yield source["secret"], "name", "Secret"
        for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
            for env_from in container.get("envFrom") or []:
                if isinstance(env_from.get("configMapRef"), dict):
                    yield env_from["configMapRef"], "name", "ConfigMap"
                if isinstance(env_from.get("secretRef"), dict):
                    yield env_from["secretRef"], "name", "Secret"
            for env in container.get("env") or []:
                value_from = env.get("valueFrom") or {}
                if isinstance(value_from.get("configMapKeyRef"), dict):
                    yield value_from["configMapKeyRef"], "name", "ConfigMap"
                if isinstance(value_from.get("secretKeyRef"), dict):
                    yield value_from["secretKeyRef"], "name", "Secret"


def _pod_specs(doc: dict):
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        yield spec
    template = spec.get("template") or (spec.get("jobTemplate") or {}).get("spec", {}).get(
        "template"
    )
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        yield template["spec"]


def _fix_references(resources: list[Resource]) -> None:
    # A reference that still holds one of a resource's former names follows it to its current
    # name, unless some resource of that kind carries the referenced name now.
    for res in resources:
        for holder, key, kind in references(res.doc):
            value = holder.get(key)
            same_kind = [r for r in resources if r.kind == kind]
            if not value or any(r.name == value for r in same_kind):
                continue
            renamed = {r.name for r in same_kind if value in r.previous_names}
            if len(renamed) == 1:
                holder[key] = renamed.pop()


def _reject_duplicates(resources: list[Resource], kfile: Path) -> None:
    seen: dict[tuple, Path] = {}
    for res in resources:
        key = (res.group, res.kind, res.namespace, res.name)
        if key in seen:
            raise KustomizeError(
                f"{kfile}: {res.kind}/{res.name} is defined twice ({seen[key]} and {res.source})"
            )
        seen[key] = res.source
