"""Run a compiled pipeline spec task by task as a Kubeflow cluster would, without a cluster.

Each task runs its executor's exact command and args from the spec (the ExecutorInput JSON in
place of the placeholder) in a fresh, empty working directory that is deleted afterwards, as a
pod's is; with the container's environment variables and the runtime Secret's keys as the
platform spec maps them (a key the Secret lacks is simply absent: the mapping is optional).
Artifacts move only as the launcher moves them: an input is copied into the task's directory
before it starts, an output is copied out of it to the object store when it succeeded. Nothing
else is shared between tasks but the stores the Secret names. The folders in ``read_only``
(the contract's, under /etc in the image) are read-only to the tasks: by their permissions for
a normal user, by a read-only bind mount in a private mount namespace for root (which ignores
permissions, and whose interpreter here is not readable by another user).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# The whole ExecutorInput, in the compiled args (spelled in parts: this file is a template).
PLACEHOLDER = "{" * 2 + "$" + "}" * 2


@dataclass
class TaskRun:
    name: str
    returncode: int
    output: str
    parameters: dict = field(default_factory=dict)
    artifacts: dict = field(default_factory=dict)  # name -> {"uri", "metadata", "type"}


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
    """``run(arguments)`` runs the whole DAG; ``runs`` holds every task that ran, in order."""

    def __init__(
        self,
        package: Path,
        work: Path,
        *,
        secret: dict[str, str],
        base_env: dict[str, str],
        timeout_s: int = 900,
        read_only: tuple[Path, ...] = (),
    ):
        spec, platform = list(yaml.safe_load_all(Path(package).read_text(encoding="utf-8")))
        self.spec = spec
        self.platform = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        self.work = Path(work)
        self.store = self.work / "object-store"  # where the launcher uploads artifacts
        self.secret = secret
        self.base_env = base_env
        self.timeout_s = timeout_s
        self.runs: list[TaskRun] = []
        self.wrapper: list[str] = []
        if read_only and os.geteuid() == 0:
            mounts = " && ".join(
                f'mount --bind "{d}" "{d}" && mount -o remount,ro,bind "{d}" "{d}"'
                for d in read_only
            )
            self.wrapper = ["unshare", "--mount", "sh", "-ec", f'{mounts} && exec "$@"', "pod"]
            probe = subprocess.run([*self.wrapper, "true"], capture_output=True, text=True)
            if probe.returncode:
                raise RuntimeError(
                    f"cannot mount the contract read-only here ({probe.stderr.strip()}): "
                    "run the test as a normal user"
                )

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
        run = TaskRun(name, 0, f"imported {uri}")
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
        pod = self.work / "pods" / name
        shutil.rmtree(pod, ignore_errors=True)
        pod.mkdir(parents=True)
        local = pod / "tmp" / "kfp"  # the launcher's download and output area
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

        env = dict(self.base_env)
        env.update({e["name"]: e["value"] for e in container.get("env", [])})
        for mount in self.platform.get(f"exec-{name}", {}).get("secretAsEnv", []):
            for pair in mount["keyToEnv"]:
                if pair["secretKey"] in self.secret:
                    env[pair["envVar"]] = self.secret[pair["secretKey"]]
        env["HOME"] = str(pod)
        done = subprocess.run(
            [*self.wrapper, *container["command"], *args],
            cwd=pod,
            env=env,
            capture_output=True,
            text=True,
            timeout=self.timeout_s,
        )
        run = TaskRun(name, done.returncode, done.stdout + done.stderr)
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
