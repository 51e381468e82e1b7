"""``amnet pipeline submit|schedule`` against a FAKE Kubeflow Pipelines API server.

No Kubeflow API server runs here, so ``FakeKfpServer`` (http.server in a thread) stands in for the
handful of REST endpoints ``kfp.Client`` 2.17 calls (``/apis/v2beta1/healthz``, ``experiments``,
``runs``, ``recurringruns``), answers them minimally and records every request. The tests check
what the real client sends: the compiled pipeline spec inside the run, the run parameters, the
recurring run's cron / no-catchup / max-concurrency, and the bearer token (which is never printed).
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from amnet_pipeline import run_config

from amnet.errors import AmnetError

TOKEN = "fake-token-never-printed"


class FakeKfpServer:
    """Records requests; answers healthz, experiments (get-or-create), runs and recurring runs."""

    def __init__(self, experiments: dict[str, str] | None = None):
        self.requests: list[dict] = []
        self.experiments = dict(experiments or {})  # display name -> id
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def _answer(self, method: str):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                server.requests.append({"method": method, "path": url.path, "query": parse_qs(url.query),
                                        "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body})
                try:
                    status, payload = server.route(method, url.path, parse_qs(url.query), body)
                except Exception as exc:  # a request the stand-in does not understand: say so, do not hang
                    status, payload = 500, {"error": f"fake KFP server: {exc!r}"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def route(self, method: str, path: str, query: dict, body) -> tuple[int, dict]:
        if (method, path) == ("GET", "/apis/v2beta1/healthz"):
            return 200, {"multi_user": False}
        if (method, path) == ("GET", "/apis/v2beta1/experiments"):
            wanted = json.loads(query["filter"][0])["predicates"][0]["stringValue"]
            found = [{"experiment_id": eid, "display_name": name} for name, eid in self.experiments.items()
                     if name == wanted]
            return 200, {"experiments": found, "total_size": len(found)}
        if (method, path) == ("POST", "/apis/v2beta1/experiments"):
            eid = f"exp-{len(self.experiments) + 1}"
            self.experiments[body["display_name"]] = eid
            return 200, {"experiment_id": eid, "display_name": body["display_name"]}
        if (method, path) == ("POST", "/apis/v2beta1/runs"):
            return 200, {"run_id": "run-1", "display_name": body["display_name"],
                         "experiment_id": body["experiment_id"], "state": "PENDING"}
        if (method, path) == ("POST", "/apis/v2beta1/recurringruns"):
            return 200, {"recurring_run_id": "rr-1", "display_name": body["display_name"], "status": "ENABLED"}
        return 404, {"error": f"fake KFP server: no route for {method} {path}"}

    def calls(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def __enter__(self) -> "FakeKfpServer":
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def kfp_env(tmp_path, monkeypatch):
    """A clean kfp client context (no ~/.config/kfp namespace) and a bearer token in the environment."""
    from kfp.client import client

    monkeypatch.setattr(client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    for var in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
                "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)


def test_submit_creates_experiment_and_run_with_the_compiled_spec(kfp_env, capsys):
    from amnet_pipeline.cli import main_submit

    with FakeKfpServer() as server:
        rc = main_submit(["--host", server.url, "--experiment", "amnet-ci", "--run-name", "ci-run",
                          "--config", "configs/demo.yaml", "--set", "dataset=s3://amnet/datasets/synth",
                          "--set", "train.epochs=2", "--set", "variants=[amnet, no_memory]", "--set", "train.lr=0.005",
                          "--pipeline-root", "s3://amnet/pipeline-root"])
    assert rc == 0
    created = server.calls("POST", "/apis/v2beta1/experiments")
    assert [c["body"]["display_name"] for c in created] == ["amnet-ci"]
    (run,) = server.calls("POST", "/apis/v2beta1/runs")
    body = run["body"]
    assert body["display_name"] == "ci-run" and body["experiment_id"] == "exp-1"
    spec = body["pipeline_spec"]["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "amnet"
    assert "exec-train-amnet" in spec["deploymentSpec"]["executors"]
    assert "exec-train-amnet" in body["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"][
        "deploymentSpec"]["executors"]
    runtime = body["runtime_config"]
    assert runtime["pipeline_root"] == "s3://amnet/pipeline-root"
    params = runtime["parameters"]
    assert params["dataset_uri"] == "s3://amnet/datasets/synth" and params["variants"] == ["amnet", "no_memory"]
    # one mapping per stage, exactly the file's section with the --set overrides; the run file's
    # experiment (amnet) wins over --experiment for MLflow, as documented
    assert params["train_config"] == {**run_config.load("configs/demo.yaml").sections["train"], "epochs": 2,
                                      "lr": 0.005}
    assert params["pretrain_config"]["model"] == {"backbone": "small", "image_size": 64, "feature_dim": 256}
    assert set(params) == {"dataset_uri", "variants", "attribute_baseline", "experiment", "split_config",
                           "pretrain_config", "prototypes_config", "train_config", "featurize_config",
                           "evaluate_config", "register_config"}
    assert all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in server.requests)
    out = capsys.readouterr()
    assert "submitted run run-1" in out.out
    assert TOKEN not in out.out + out.err


def test_submit_reuses_an_existing_experiment(kfp_env):
    from amnet_pipeline.cli import main_submit

    with FakeKfpServer(experiments={"amnet": "exp-42"}) as server:
        main_submit(["--host", server.url, "--set", "dataset=s3://amnet/ds", "--no-gpu"])
    assert server.calls("POST", "/apis/v2beta1/experiments") == []
    (run,) = server.calls("POST", "/apis/v2beta1/runs")
    assert run["body"]["experiment_id"] == "exp-42"
    assert "nvidia.com/gpu" not in json.dumps(run["body"]["pipeline_spec"])


def test_schedule_creates_an_enabled_recurring_run(kfp_env, capsys):
    from amnet_pipeline.cli import main_schedule

    with FakeKfpServer() as server:
        rc = main_schedule(["--host", server.url, "--cron", "0 0 3 * * 0", "--name", "weekly-retrain",
                            "--set", "dataset=s3://amnet/ds", "--set", "attribute_baseline=false"])
    assert rc == 0
    (recurring,) = server.calls("POST", "/apis/v2beta1/recurringruns")
    body = recurring["body"]
    assert body["display_name"] == "weekly-retrain"
    assert body["experiment_id"] == "exp-1"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"
    assert body["no_catchup"] is True
    assert int(body["max_concurrency"]) == 1
    assert body["mode"] == "ENABLE"
    params = body["runtime_config"]["parameters"]
    assert params["dataset_uri"] == "s3://amnet/ds" and params["attribute_baseline"] is False
    assert params["experiment"] == "amnet" and params["train_config"] == {}  # no file: the dataclass defaults
    assert body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "amnet"
    assert "scheduled 'weekly-retrain' (rr-1)" in capsys.readouterr().out


@pytest.mark.parametrize("cron, message", [
    ("0 3 * * 0", "prepend the seconds: '0 0 3 * * 0'"),
    ("0 0 25 * * 0", "hour value 25 is outside 0-23"),
    ("0 0 3 * * 0 2030", "has 7 field(s)"),
])
def test_schedule_rejects_bad_cron_before_any_request(kfp_env, cron, message):
    from amnet_pipeline.cli import main_schedule

    with FakeKfpServer() as server, pytest.raises(AmnetError, match="--cron") as err:
        main_schedule(["--host", server.url, "--cron", cron, "--set", "dataset=s3://amnet/ds"])
    assert message in str(err.value)
    assert server.requests == []


def test_submit_rejects_unknown_and_missing_parameters(kfp_env):
    from amnet_pipeline.cli import main_submit

    with FakeKfpServer() as server:
        with pytest.raises(AmnetError, match="unknown key.*epoch.*valid: dataset, variants"):
            main_submit(["--host", server.url, "--set", "dataset=s3://x", "--set", "epoch=2"])
        with pytest.raises(AmnetError, match=r"train: unknown TrainConfig key 'learning_rate'; valid keys: variant, "
                           r"epochs"):
            main_submit(["--host", server.url, "--set", "dataset=s3://x", "--set", "train.learning_rate=2"])
        with pytest.raises(AmnetError, match=r"train: lam must be in \[0, 1\]"):
            main_submit(["--host", server.url, "--set", "dataset=s3://x", "--set", "train.lam=1.5"])
        with pytest.raises(AmnetError, match="train.variant is set by the pipeline"):
            main_submit(["--host", server.url, "--set", "dataset=s3://x", "--set", "train.variant=no_memory"])
        with pytest.raises(AmnetError, match="--set dataset="):
            main_submit(["--host", server.url])
    assert server.requests == []
