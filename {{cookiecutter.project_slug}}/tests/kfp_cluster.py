"""Run a compiled pipeline spec task by task as a Kubeflow cluster would, without a cluster.

Each task runs its executor's exact command and args from the spec (the ExecutorInput JSON in
place of the placeholder) in its own pod folder that is deleted afterwards: its ``tmp/`` (the
image's writable /tmp: working directory, HOME and temporary files) starts empty. The pod is
the image the project's Dockerfile builds (:func:`read_dockerfile`): the project installed from
its wheel alone (:func:`install_project`; the third-party stack is the current venv's, as the
image's venv holds it), the final stage's environment with its paths mapped into the pod, the
files it copies (the contract) read-only, and, when the test runs as root, its user (UID/GID
10001) in a private mount namespace. The container's environment variables and the runtime
Secret's keys come as the platform spec maps them (a key the Secret lacks is simply absent: the
mapping is optional). Artifacts move only as the launcher moves them: an input is copied into
the pod before the task starts, an output is copied out of it to the object store when the task
succeeded. Nothing else is shared between tasks but the stores the Secret names.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# The whole ExecutorInput, in the compiled args (spelled in parts: this file is a template).
PLACEHOLDER = "{" * 2 + "$" + "}" * 2
# The base image's PATH, which an ENV's $PATH expands to (python:*-slim).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Writable in a pod (the Dockerfile's WORKDIR and HOME are there); the rest is the image's.
POD_TMP = "/tmp"
# Launcher-side probe, first on the tasks' import path: at exit every Python process of a task
# records where the traced package's modules were imported from, so a test can tell the
# installed wheel from a source tree. It changes nothing the task does.
TRACE_MODULE = """\
import atexit
import json
import os
import sys


def _record():
    package, folder = os.environ.get("KFP_TRACE_PACKAGE"), os.environ.get("KFP_TRACE_DIR")
    if not package or not folder:
        return
    found = {
        name: getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name == package or name.startswith(package + ".")
    }
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w") as out:
        json.dump(found, out)


atexit.register(_record)
"""


# -- the image ---------------------------------------------------------------------------------


@dataclass
class Image:
    """What the Dockerfile builds: the final stage's user, environment, working directory and
    copied files, the venv it installs into, and what its build stages take from the context."""

    user: tuple[int, int]
    env: dict[str, str]
    workdir: str
    venv: str
    files: dict[str, str]  # path in the image -> its source in the build context
    context: list[str]  # build-context paths the build stages copy


def _instructions(text: str) -> list[tuple[str, str]]:
    out, current = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        line = line.rstrip()
        if line.endswith("\\"):  # continued on the next line
            current += line[:-1] + " "
            continue
        keyword, _, rest = (current + line).strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def read_dockerfile(path: Path) -> Image:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions(Path(path).read_text(encoding="utf-8")):
        if keyword == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append((keyword, rest))
    if not stages:
        raise ValueError(f"{path}: no FROM")
    context, venv = [], ""
    for stage in stages[:-1]:
        for keyword, rest in stage:
            words = shlex.split(rest)
            if keyword == "COPY" and not any(w.startswith("--from") for w in words):
                context += [w for w in words[:-1] if not w.startswith("--")]
            if keyword == "RUN" and (found := re.search(r"-m venv\s+(\S+)", rest)):
                venv = found.group(1)
    user, env, workdir, files = None, {}, "/", {}
    for keyword, rest in stages[-1]:
        words = shlex.split(rest)
        if keyword == "ENV":
            env.update(w.split("=", 1) for w in words)
        elif keyword == "USER":
            uid, _, gid = rest.partition(":")
            user = (int(uid), int(gid or uid))
        elif keyword == "WORKDIR":
            workdir = rest
        elif keyword == "COPY" and not any(w.startswith("--from") for w in words):
            source, dest = words[-2], words[-1]
            files[dest + Path(source).name if dest.endswith("/") else dest] = source
    if user is None or not venv:
        raise ValueError(f"{path}: expected a numeric USER uid:gid and a `python -m venv` RUN")
    return Image(user, env, workdir, venv, files, context)


def install_project(project: Path, image: Image, work: Path) -> tuple[Path, Path]:
    """Build the project's wheel from what the Dockerfile's build stage copies, offline with the
    venv's build backend, and install it alone (``--no-deps``) into ``work/site``: the image's
    package, whose stack is the venv's. Returns (wheel, site)."""
    context, dist, site = work / "context", work / "dist", work / "site"
    for name in image.context:
        source, target = project / name, context / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)

    def pip(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode:
            raise RuntimeError(
                f"pip {args[0]} failed (is the dev extra, with the build backend, installed?):\n"
                f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )

    # --check-build-dependencies: the venv's backend must satisfy [build-system] requires.
    pip(
        "wheel",
        "--no-deps",
        "--no-index",
        "--no-build-isolation",
        "--check-build-dependencies",
        "--wheel-dir",
        str(dist),
        str(context),
    )
    wheels = sorted(dist.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel in {dist}, found {wheels}")
    pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheels[0]))
    site.chmod(0o755)  # the pod's user reads it, as the image's venv
    return wheels[0], site


# -- the pod's user ----------------------------------------------------------------------------


def _enterable(folder: Path, uid: int, gid: int) -> bool:
    st = folder.stat()
    return bool(
        st.st_mode & stat.S_IXOTH
        or (st.st_uid == uid and st.st_mode & stat.S_IXUSR)
        or (st.st_gid == gid and st.st_mode & stat.S_IXGRP)
    )


def _expose(paths: list[Path], uid: int, gid: int, holds: Path) -> list[str]:
    """Root's shell commands, in the pod's own mount namespace, that let ``uid`` reach each of
    ``paths`` through folders it may not enter (a root-only home holding the interpreter,
    pytest's private temporary folders): such a folder is covered with an empty tmpfs holding
    only the needed children, bind-mounted from the originals. No permission changes on the
    host; only the pod sees it."""
    needed: dict[Path, set[str]] = {}
    for path in paths:
        chain = [*reversed(path.parents), path]
        for folder, child in zip(chain, chain[1:], strict=False):
            if not _enterable(folder, uid, gid):
                needed.setdefault(folder, set()).add(child.name)
        if not _enterable(path, uid, gid):
            raise PermissionError(f"{path} is not enterable by uid {uid}: fix its mode")
    if any(holds.is_relative_to(folder) for folder in needed):
        raise RuntimeError(f"{holds} lies under a folder uid {uid} cannot enter")
    commands: list[str] = []
    for folder in sorted(needed, key=lambda p: len(p.parts)):  # outer folders first
        pairs = []
        for child in sorted(needed[folder]):
            hold = holds / str(len(list(holds.iterdir())))
            hold.mkdir()
            pairs.append((shlex.quote(str(folder / child)), shlex.quote(str(hold))))
        commands += [f"mount --bind {child} {hold}" for child, hold in pairs]
        commands.append(f"mount -t tmpfs -o mode=0755,size=1m tmpfs {shlex.quote(str(folder))}")
        commands += [f"mkdir {child} && mount --move {hold} {child}" for child, hold in pairs]
    return commands


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (st.st_uid, st.st_gid)
    return found


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for name in _tree(root):
        os.chown(root / name, uid, gid, follow_symlinks=False)


def _read_only(root: Path) -> None:
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            (Path(folder) / name).chmod(0o444)
        Path(folder).chmod(0o555)


# -- the cluster -------------------------------------------------------------------------------


@dataclass
class TaskRun:
    name: str
    returncode: int
    output: str
    parameters: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)  # name -> {"uri", "metadata", "type"}
    modules: dict = field(default_factory=dict)  # traced package's module -> its file
    owners: set = field(default_factory=set)  # (uid, gid) of what the task wrote in its pod
    in_pod: bool = True  # False for an importer: nothing runs
    seconds: float = 0.0


class TaskFailed(RuntimeError):
    def __init__(self, run: TaskRun):
        super().__init__(f"task {run.name} failed ({run.returncode}):\n{run.output[-4000:]}")
        self.run = run


def _condition(expression: str, parameters: dict) -> bool:
    """The trigger conditions kfp compiles for dsl.If / dsl.Else (CEL subset: ==, !=, !, &&, ||)."""

    def value(match: re.Match) -> str:
        return repr(parameters[match.group(1)])

    python = re.sub(r"inputs\.parameter_values\['([^']+)'\]", value, expression)
    python = python.replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"!(?!=)", " not ", python)
    return bool(eval(python, {"__builtins__": {}}, {}))  # noqa: S307 - our own compiled spec


class ClusterEmulator:
    """``run(arguments)`` runs the whole DAG; ``runs`` holds every task that ran, in order.

    ``files`` maps a path in the image to the file to put there (the Dockerfile's COPYs, the
    contract among them); ``site`` holds the installed project (:func:`install_project`);
    ``trace`` names the package whose imports each task records (``TaskRun.modules``).
    ``user`` is the (uid, gid) the tasks run as: the image's when the test runs as root, else
    the current user's, and then ``note`` says so.
    """

    def __init__(
        self,
        package: Path,
        work: Path,
        *,
        image: Image,
        site: Path,
        files: dict[str, Path],
        secret: dict[str, str],
        env: dict[str, str] | None = None,
        trace: str = "",
        timeout_s: int = 900,
    ):
        spec, platform = list(yaml.safe_load_all(Path(package).read_text(encoding="utf-8")))
        self.spec = spec
        self.platform = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        self.image, self.site, self.secret, self.trace = image, Path(site), secret, trace
        self.extra_env = dict(env or {})
        self.timeout_s = timeout_s
        self.runs: list[TaskRun] = []
        self.work = Path(work).resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.work.chmod(0o755)
        self.store = self.work / "object-store"  # where the launcher uploads artifacts
        self.store.mkdir(mode=0o700, exist_ok=True)  # the launcher's, not the tasks'
        self.pods = self.work / "pods"
        self.pods.mkdir(mode=0o755, exist_ok=True)
        self.tools = self.work / "launcher"  # the trace probe, on the tasks' import path
        self.tools.mkdir(mode=0o755, exist_ok=True)
        (self.tools / "sitecustomize.py").write_text(TRACE_MODULE, encoding="utf-8")
        # The image's own files, read-only (a ConfigMap mount over the contract's folder is).
        self.rootfs = self.work / "image"
        for target, source in files.items():
            path = self.rootfs / target.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, path)
        _read_only(self.rootfs)
        self.paths = {image.venv: sys.prefix}  # image path -> here; /tmp is each pod's own
        self.paths.update(
            {os.path.dirname(t): str(self.rootfs) + os.path.dirname(t) for t in files}
        )

        self.wrapper: list[str] = []
        self.note = ""
        if os.geteuid() == 0:
            self.user = image.user
            uid, gid = self.user
            holds = Path(tempfile.mkdtemp(prefix="kfp-pod-mounts-"))
            weakref.finalize(self, shutil.rmtree, holds, True)
            reach = [Path(sys.base_prefix).resolve(), Path(sys.prefix), self.site, self.tools]
            commands = _expose([p.resolve() for p in [*reach, self.pods]], uid, gid, holds)
            root = shlex.quote(str(self.rootfs))
            commands.append(f"mount --bind {root} {root} && mount -o remount,ro,bind {root} {root}")
            setpriv = f"setpriv --reuid={uid} --regid={gid} --clear-groups --"
            script = " && ".join([*commands, f'exec {setpriv} "$@"'])
            self.wrapper = ["unshare", "--mount", "sh", "-ec", script, "pod"]
            probe = subprocess.run(
                [*self.wrapper, sys.executable, "-c", "import os; print(os.getuid())"],
                capture_output=True,
                text=True,
                cwd="/",
            )
            if probe.returncode or probe.stdout.strip() != str(uid):
                # A container without mount privileges (unshare refused): run as root, say so.
                reason = probe.stderr.strip().splitlines()[-1:] or ["no output"]
                self.wrapper = []
                self.user = (os.getuid(), os.getgid())
                self.note = (
                    f"cannot switch to uid {uid} in a mount namespace here ({reason[0]}): "
                    "the tasks run as root, the contract read-only by its permissions only"
                )
        else:
            self.user = (os.getuid(), os.getgid())
            self.note = (
                f"not root: the tasks run as the current user (uid {self.user[0]}; the image's "
                f"is {image.user[0]}), the contract read-only by its permissions only"
            )

    def _here(self, path: str, tmp: Path) -> str:
        """Where a path of the image is in this pod (unchanged when the image has nothing there)."""
        paths = {POD_TMP: str(tmp), **self.paths}
        for prefix in sorted(paths, key=len, reverse=True):
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return paths[prefix] + path[len(prefix) :]
        return path

    def _image_env(self, tmp: Path) -> dict[str, str]:
        """The Dockerfile's ENV, its paths mapped into this pod."""
        env = {}
        for key, value in self.image.env.items():
            value = value.replace("${PATH}", BASE_PATH).replace("$PATH", BASE_PATH)
            env[key] = os.pathsep.join(self._here(v, tmp) for v in value.split(os.pathsep))
        if (self.site / "bin").is_dir():  # the project's console script, in the image's venv
            env["PATH"] = os.pathsep.join([str(self.site / "bin"), env.get("PATH", BASE_PATH)])
        env.setdefault("HOME", str(tmp))
        env["TMPDIR"] = str(tmp)  # /tmp is the pod's own
        return env

    # -- the DAG -------------------------------------------------------------------------------

    def run(self, arguments: dict) -> dict[str, TaskRun]:
        root = self.spec["root"]
        parameters = {
            name: d.get("defaultValue")
            for name, d in root["inputDefinitions"].get("parameters", {}).items()
        }
        parameters.update(arguments)
        return self._dag(root["dag"], parameters, {}, scope="root")

    def _dag(self, dag: dict, parameters: dict, artifacts: dict, scope: str) -> dict:
        tasks = dag.get("tasks", {})
        done: dict[str, TaskRun | dict] = {}
        pending = dict(tasks)
        while pending:
            ready = [
                n for n, t in pending.items() if all(d in done for d in t.get("dependentTasks", []))
            ]
            if not ready:
                raise RuntimeError(f"{scope}: no task can start among {sorted(pending)}")
            for name in sorted(ready):
                task = pending.pop(name)
                params, arts = self._inputs(task, parameters, artifacts, done)
                condition = task.get("triggerPolicy", {}).get("condition")
                if condition and not _condition(condition, params):
                    done[name] = {}
                    continue
                component = self.spec["components"][task["componentRef"]["name"]]
                if "dag" in component:
                    done[name] = self._dag(component["dag"], params, arts, scope=name)
                else:
                    done[name] = self._execute(name, component, params, arts)
        return done

    @staticmethod
    def _inputs(task: dict, parameters: dict, artifacts: dict, done: dict):
        params, arts = {}, {}
        for key, source in task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in source:
                params[key] = parameters[source["componentInputParameter"]]
            elif "taskOutputParameter" in source:
                producer = source["taskOutputParameter"]
                params[key] = done[producer["producerTask"]].parameters[
                    producer["outputParameterKey"]
                ]
            elif "runtimeValue" in source:
                params[key] = source["runtimeValue"]["constant"]
            else:
                raise NotImplementedError(f"parameter source {source}")
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            if "componentInputArtifact" in source:
                arts[key] = artifacts[source["componentInputArtifact"]]
            elif "taskOutputArtifact" in source:
                producer = source["taskOutputArtifact"]
                arts[key] = done[producer["producerTask"]].artifacts[producer["outputArtifactKey"]]
            else:
                raise NotImplementedError(f"artifact source {source}")
        return params, arts

    def _import(self, name: str, importer: dict, params: dict) -> TaskRun:
        """An importer registers the object at its URI as an artifact (nothing runs); here an
        object store is a local folder, reached by a ``file://`` URI or a path."""
        uri = importer["artifactUri"]
        uri = params[uri["runtimeParameter"]] if "runtimeParameter" in uri else uri["constant"]
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        if not Path(path).exists():
            raise TaskFailed(TaskRun(name, 1, f"importer: nothing at {uri}"))
        run = TaskRun(name, 0, f"imported {uri}", in_pod=False)
        run.artifacts["artifact"] = {
            "uri": path,
            "metadata": importer.get("metadata", {}),
            "type": importer["typeSchema"],
        }
        self.runs.append(run)
        return run

    # -- one pod -------------------------------------------------------------------------------

    def _execute(self, name: str, component: dict, params: dict, arts: dict) -> TaskRun:
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if "importer" in executor:
            return self._import(name, executor["importer"], params)
        container = executor["container"]
        pod = self.pods / name
        shutil.rmtree(pod, ignore_errors=True)
        tmp = pod / "tmp"  # the pod's /tmp: empty when the task starts
        local = pod / "minio"  # the launcher's local copy of the object store
        trace = pod / "trace"
        for folder in (tmp, local, trace):
            folder.mkdir(parents=True)
        inputs: dict = {"parameterValues": params, "artifacts": {}}
        for key, art in arts.items():
            target = local / "inputs" / key
            source = Path(art["uri"])
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            inputs["artifacts"][key] = {
                "artifacts": [
                    {"type": art["type"], "uri": str(target), "metadata": art["metadata"]}
                ]
            }
        outputs: dict = {"artifacts": {}, "parameters": {}, "outputFile": str(local / "out.json")}
        definitions = component.get("outputDefinitions", {})
        for key, d in definitions.get("artifacts", {}).items():
            outputs["artifacts"][key] = {
                "artifacts": [
                    {
                        "type": d["artifactType"],
                        "uri": str(local / "outputs" / key),
                        "metadata": {},
                    }
                ]
            }
        for key in definitions.get("parameters", {}):
            outputs["parameters"][key] = {"outputFile": str(local / "parameters" / key)}
        executor_input = json.dumps({"inputs": inputs, "outputs": outputs})
        args = [a.replace(PLACEHOLDER, executor_input) for a in container.get("args", [])]

        workdir = Path(self._here(self.image.workdir, tmp))
        if not workdir.is_relative_to(tmp):
            raise NotImplementedError(f"WORKDIR {self.image.workdir}: only under {POD_TMP}")
        workdir.mkdir(parents=True, exist_ok=True)
        env = self._image_env(tmp)
        env.update(self.extra_env)
        # The installed project first, then the trace probe; the venv's site-packages after.
        env["PYTHONPATH"] = os.pathsep.join([str(self.site), str(self.tools)])
        env.update(KFP_TRACE_PACKAGE=self.trace, KFP_TRACE_DIR=str(trace))
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
        for mount in self.platform.get(f"exec-{name}", {}).get("secretAsEnv", []):
            for pair in mount["keyToEnv"]:
                if pair["secretKey"] in self.secret:
                    env[pair["envVar"]] = self.secret[pair["secretKey"]]
        if os.geteuid() == 0:
            _chown_tree(pod, *self.user)  # the launcher runs as the pod's user too
        before = _tree(pod)
        start = time.monotonic()
        done = subprocess.run(
            [*self.wrapper, *container["command"], *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
        )
        run = TaskRun(name, done.returncode, done.stdout + done.stderr)
        run.seconds = round(time.monotonic() - start, 2)
        run.owners = {owner for path, owner in _tree(pod).items() if path not in before}
        for record in sorted(trace.glob("*.json")):
            run.modules.update(json.loads(record.read_text(encoding="utf-8")))
        self.runs.append(run)
        if done.returncode == 0:
            result = json.loads((local / "out.json").read_text(encoding="utf-8"))
            run.parameters = result.get("parameterValues", {})
            for key, d in definitions.get("artifacts", {}).items():
                produced = result.get("artifacts", {}).get(key, {}).get("artifacts", [{}])[0]
                source = local / "outputs" / key
                target = self.store / name / key  # the upload
                target.parent.mkdir(parents=True, exist_ok=True)
                if source.is_dir():
                    shutil.copytree(source, target)
                elif source.exists():
                    shutil.copyfile(source, target)
                run.artifacts[key] = {
                    "uri": str(target),
                    "metadata": produced.get("metadata", {}),
                    "type": d["artifactType"],
                }
        shutil.rmtree(pod, ignore_errors=True)  # the pod is gone, and whatever it wrote
        if done.returncode:
            raise TaskFailed(run)
        return run
