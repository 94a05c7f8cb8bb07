"""Build a Kustomize target with the real ``kubectl kustomize`` and keep where each document came from.

The target is built through a one-line wrapper kustomization with ``buildMetadata:
[originAnnotations]``: Kustomize then records each document's source file in the annotation
``config.kubernetes.io/origin``. The annotation is taken off again, so the documents checked are
exactly what ``kubectl kustomize DIR`` (and ``kubectl apply -k DIR``) gives, and a failure can
name the file to edit.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .kubectl import require_kubectl

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
ORIGIN = "config.kubernetes.io/origin"
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

# libyaml's loader when PyYAML has it: the same documents, several times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_yaml_all(text: str) -> list[Any]:
    """Every document of a YAML text, loaded safely."""
    return list(yaml.load_all(text, Loader=_LOADER))


class KustomizeError(ValueError):
    """``kubectl kustomize`` refused the target; the message is Kustomize's own."""


@dataclass
class Resource:
    """One built document and the file it came from (its kustomization, if generated)."""

    doc: dict[str, Any]
    source: Path

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


def build(folder: str | Path, kubectl: Path | None = None) -> list[Resource]:
    """``kubectl kustomize folder`` as resources; KustomizeError with Kustomize's message."""
    folder = Path(folder).resolve()
    kubectl = kubectl or require_kubectl()
    with tempfile.TemporaryDirectory(prefix="kustomize-") as tmp:
        wrapper = Path(tmp).resolve()
        # Kustomize takes a folder resource only as a relative path.
        relative = os.path.relpath(folder, wrapper)
        (wrapper / "kustomization.yaml").write_text(
            f"resources:\n  - {relative}\nbuildMetadata: [originAnnotations]\n", encoding="utf-8"
        )
        done = subprocess.run(
            [str(kubectl), "kustomize", str(wrapper)], capture_output=True, text=True
        )
        if done.returncode != 0:
            message = done.stderr.strip().replace(str(wrapper), "<wrapper>").replace(relative, ".")
            raise KustomizeError(f"{folder}: kubectl kustomize failed: {message}")
        return [_resource(doc, wrapper) for doc in parse_yaml_all(done.stdout) if doc]


def _resource(doc: dict, wrapper: Path) -> Resource:
    metadata = doc.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    origin = yaml.safe_load(annotations.pop(ORIGIN, "") or "{}") or {}
    if not annotations:
        metadata.pop("annotations", None)
    where = origin.get("path") or origin.get("configuredIn") or ""
    return Resource(doc, Path(os.path.normpath(wrapper / where)) if where else Path("?"))


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``repo[:tag][@digest]`` as (repo, tag, digest); a registry port is not a tag."""
    rest, _, digest = image.partition("@")
    repo, tag = rest, None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        repo, tag = rest[:colon], rest[colon + 1 :]
    return repo, tag, digest or None
