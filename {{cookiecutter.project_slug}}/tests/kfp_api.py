"""A stand-in for the Kubeflow Pipelines API server (REST v2beta1) on 127.0.0.1, for the real
``kfp.Client``: experiments, runs and recurring runs kept in memory, every request recorded
with its headers, list filters on ``display_name`` and pagination honoured as the real server
does. What the tests check is what our code sends through kfp.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1/"
EQUALS = ("EQUALS", 1)  # the filter proto's enum, by name (JSON) or number (kfp's own filters)


def _matches(item: dict, query: dict) -> bool:
    raw = query.get("filter", [""])[0]
    if not raw:
        return True
    for predicate in json.loads(raw).get("predicates", []):
        if predicate.get("operation") not in EQUALS:
            raise ValueError(f"unsupported filter {predicate}")
        if str(item.get(predicate["key"])) != str(predicate.get("stringValue")):
            return False
    return True


class FakeKfpApi:
    """``with FakeKfpApi() as api: kfp.Client(host=api.host)``."""

    def __init__(self):
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                api.requests.append(
                    {
                        "method": method,
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
                try:
                    status, reply = api.route(method, url.path, parse_qs(url.query), body)
                except (ValueError, KeyError) as exc:
                    status, reply = 400, {"error": str(exc)}
                self._reply(status, reply)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKfpApi:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def _page(items: list[dict], key: str, query: dict) -> dict:
        size = int(query.get("page_size", ["10"])[0] or 10)
        start = int(query.get("page_token", ["0"])[0] or 0)
        page = items[start : start + size]
        more = start + size < len(items)
        return {
            key: page,
            "total_size": len(items),
            "next_page_token": str(start + size) if more else "",
        }

    def route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict]:
        name = path[len(PREFIX) :] if path.startswith(PREFIX) else path
        if (method, name) == ("GET", "healthz"):
            return 200, {"multi_user": False}
        if name == "experiments":
            if method == "POST":
                experiment = {**body, "experiment_id": f"exp-{uuid.uuid4().hex[:8]}"}
                self.experiments[experiment["experiment_id"]] = experiment
                return 200, experiment
            found = [e for e in self.experiments.values() if _matches(e, query)]
            return 200, self._page(found, "experiments", query)
        if name == "recurringruns":
            if method == "POST":
                run = {**body, "recurring_run_id": f"rr-{uuid.uuid4().hex[:8]}"}
                self.recurring_runs[run["recurring_run_id"]] = run
                return 200, run
            wanted = query.get("experiment_id", [None])[0]
            found = [
                r
                for r in self.recurring_runs.values()
                if (wanted is None or r.get("experiment_id") == wanted) and _matches(r, query)
            ]
            return 200, self._page(found, "recurringRuns", query)
        if name.startswith("recurringruns/") and method == "DELETE":
            self.recurring_runs.pop(name.split("/", 1)[1], None)
            return 200, {}
        if name == "runs" and method == "POST":
            run = {**body, "run_id": f"run-{uuid.uuid4().hex[:8]}"}
            self.runs[run["run_id"]] = run
            return 200, run
        return 404, {"error": f"{method} {path}: not in the fake API"}

    def authorizations(self) -> set[str | None]:
        """The Authorization headers of every request after the health check."""
        return {
            r["headers"].get("authorization")
            for r in self.requests
            if r["path"] != PREFIX + "healthz"
        }
