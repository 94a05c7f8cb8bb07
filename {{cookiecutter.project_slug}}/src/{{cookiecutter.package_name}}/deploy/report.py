"""The result of ``deploy check``: every document rendered, every failure, every skip."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Finding:
    """One failed check: in which target and document, at which path, and what is wrong."""

    target: str
    kind: str
    name: str
    path: str
    message: str
    source: str = ""

    def line(self) -> str:
        if not self.kind:  # a file-level finding, e.g. a contract value out of date
            return f"FAIL {self.target}: {self.name}: {self.message}"
        where = f" [{self.source}]" if self.source else ""
        path = f" {self.path}" if self.path else ""
        return f"FAIL {self.target}: {self.kind}/{self.name}{path}: {self.message}{where}"


@dataclass(frozen=True)
class DocumentResult:
    """One rendered document and how its schema was checked."""

    target: str
    kind: str
    name: str
    namespace: str | None
    source: str
    validation: str
    ok: bool = True


@dataclass
class CheckReport:
    """Everything ``check_deploy`` looked at; ``ok`` is False when any check failed."""

    k8s_version: str
    crd_schemas: str
    # The kubectl that rendered the targets, with its version.
    renderer: str = ""
    targets: list[str] = field(default_factory=list)
    documents: list[DocumentResult] = field(default_factory=list)
    failures: list[Finding] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def messages(self) -> list[str]:
        """The failure lines alone."""
        return [f.line() for f in self.failures]

    def lines(self) -> list[str]:
        """A readable report: documents, skips, failures, then a one-line summary."""
        out = [f"Kubernetes {self.k8s_version} (strict); CRD schemas: {self.crd_schemas}"]
        if self.renderer:
            out.append(f"Rendered by {self.renderer}")
        for doc in self.documents:
            mark = "ok  " if doc.ok else "FAIL"
            out.append(
                f"{mark} {doc.target}: {doc.kind}/{doc.name} ({doc.validation}) [{doc.source}]"
            )
        out.extend(f"SKIPPED {reason}" for reason in self.skipped)
        out.extend(self.messages())
        status = "passed" if self.ok else "FAILED"
        out.append(
            f"deploy check {status}: {len(self.targets)} targets, {len(self.documents)} documents, "
            f"{len(self.failures)} failures, {len(self.skipped)} skipped"
        )
        return out
