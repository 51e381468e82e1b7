"""``amnet pipeline submit|schedule`` against a FAKE Kubeflow Pipelines API server.

No Kubeflow API server runs here, so ``FakeKfpServer`` (http.server in a thread) stands in for the
REST endpoints ``kfp.Client`` 2.17 calls (``/apis/v2beta1/healthz``, ``experiments``, ``pipelines``
with uploads and versions, ``runs`` and one run's state, ``recurringruns``), keeps what they create,
answers minimally and records every request. The tests check what the real client sends: the compiled
pipeline uploaded as a named, content-versioned pipeline version, the run parameters, the recurring
run's cron / no-catchup / max-concurrency, that re-applying a schedule replaces the recurring run
instead of adding a second one, and the bearer token (which is never printed); and what the command
prints and exits with: the run id and its UI address, ``--wait`` on the run's final state,
``$KF_PIPELINES_ENDPOINT`` as the default host, and a server that is not there or refuses.
"""

import email.parser
import email.policy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from amnet_pipeline import run_config

from amnet.cli import main
from amnet.errors import AmnetError

TOKEN = "fake-token-never-printed"


def _multipart_files(content_type: str, raw: bytes) -> dict[str, str]:
    """{field name: text} of a multipart/form-data body (the pipeline package uploads)."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    return {part.get_param("name", header="content-disposition"): part.get_content()
            for part in message.iter_parts()}


def _display_name_filter(query: dict) -> str | None:
    if "filter" not in query:
        return None
    return json.loads(query["filter"][0])["predicates"][0]["stringValue"]


class FakeKfpServer:
    """Records requests; keeps experiments, pipelines (uploads, versions), runs and recurring runs.

    ``run_states``: what ``GET runs/{id}`` answers for a run's state, one per request, the last one
    repeated (default: SUCCEEDED at once). ``refuse``: {(method, path): HTTP status} answered instead."""

    def __init__(self, experiments: dict[str, str] | None = None, run_states: list[str] | None = None,
                 refuse: dict[tuple[str, str], int] | None = None):
        self.requests: list[dict] = []
        self.experiments = dict(experiments or {})  # display name -> id
        self.pipelines: dict[str, dict] = {}  # id -> {display_name, versions: {id: {display_name, package}}}
        self.recurring: dict[str, dict] = {}  # id -> the create body
        self.runs: dict[str, dict] = {}  # id -> the create body
        self.run_states = list(run_states or ["SUCCEEDED"])
        self.refuse = dict(refuse or {})
        self._ids = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def do_DELETE(self):
                self._answer("DELETE")

            def _answer(self, method: str):
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                content_type = self.headers.get("Content-Type") or ""
                if content_type.startswith("multipart/form-data"):
                    body = {"files": _multipart_files(content_type, raw)}
                else:
                    body = json.loads(raw or b"null") if length else None
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

    def _new_id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self._ids}"

    def _add_version(self, pipeline_id: str, name: str, body: dict) -> dict:
        version_id = self._new_id("pv")
        (package,) = body["files"].values()
        self.pipelines[pipeline_id]["versions"][version_id] = {"display_name": name, "package": package}
        return {"pipeline_id": pipeline_id, "pipeline_version_id": version_id, "display_name": name}

    def route(self, method: str, path: str, query: dict, body) -> tuple[int, dict]:
        parts = path.removeprefix("/apis/v2beta1/").split("/")
        if (method, path) in self.refuse:
            return self.refuse[method, path], {"error": "fake KFP server: refused", "code": 7,
                                               "message": "fake KFP server: refused"}
        if (method, path) == ("GET", "/apis/v2beta1/healthz"):
            return 200, {"multi_user": False}
        if (method, path) == ("GET", "/apis/v2beta1/experiments"):
            wanted = _display_name_filter(query)
            found = [{"experiment_id": eid, "display_name": name} for name, eid in self.experiments.items()
                     if name == wanted]
            return 200, {"experiments": found, "total_size": len(found)}
        if (method, path) == ("POST", "/apis/v2beta1/experiments"):
            eid = f"exp-{len(self.experiments) + 1}"
            self.experiments[body["display_name"]] = eid
            return 200, {"experiment_id": eid, "display_name": body["display_name"]}
        if (method, path) == ("GET", "/apis/v2beta1/pipelines"):
            wanted = _display_name_filter(query)
            found = [{"pipeline_id": pid, "display_name": p["display_name"]} for pid, p in self.pipelines.items()
                     if wanted is None or p["display_name"] == wanted]
            return 200, {"pipelines": found, "total_size": len(found)}
        if (method, path) == ("POST", "/apis/v2beta1/pipelines/upload"):
            name = query["name"][0]
            pipeline_id = self._new_id("p")
            self.pipelines[pipeline_id] = {"display_name": name, "versions": {}}
            self._add_version(pipeline_id, name, body)  # the server's own first version, named as the pipeline
            return 200, {"pipeline_id": pipeline_id, "display_name": name}
        if (method, path) == ("POST", "/apis/v2beta1/pipelines/upload_version"):
            return 200, self._add_version(query["pipelineid"][0], query["name"][0], body)
        if method == "GET" and parts[0] == "pipelines" and len(parts) == 3 and parts[2] == "versions":
            wanted = _display_name_filter(query)
            found = [{"pipeline_id": parts[1], "pipeline_version_id": vid, "display_name": v["display_name"]}
                     for vid, v in self.pipelines[parts[1]]["versions"].items()
                     if wanted is None or v["display_name"] == wanted]
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if (method, path) == ("POST", "/apis/v2beta1/runs"):
            run_id = f"run-{len(self.runs) + 1}"
            self.runs[run_id] = body
            return 200, {"run_id": run_id, "display_name": body["display_name"],
                         "experiment_id": body["experiment_id"], "state": "PENDING"}
        if method == "GET" and parts[0] == "runs" and len(parts) == 2:
            body = self.runs[parts[1]]
            state = self.run_states.pop(0) if len(self.run_states) > 1 else self.run_states[0]
            return 200, {"run_id": parts[1], "display_name": body["display_name"],
                         "experiment_id": body["experiment_id"], "state": state}
        if (method, path) == ("GET", "/apis/v2beta1/recurringruns"):
            wanted = _display_name_filter(query)
            experiment = query.get("experiment_id", [None])[0]
            found = [{"recurring_run_id": rid, **r} for rid, r in self.recurring.items()
                     if (wanted is None or r["display_name"] == wanted)
                     and (experiment is None or r["experiment_id"] == experiment)]
            return 200, {"recurringRuns": found, "total_size": len(found)}
        if (method, path) == ("POST", "/apis/v2beta1/recurringruns"):
            rid = self._new_id("rr")
            self.recurring[rid] = body
            return 200, {"recurring_run_id": rid, "display_name": body["display_name"], "status": "ENABLED"}
        if method == "DELETE" and parts[0] == "recurringruns" and len(parts) == 2:
            self.recurring.pop(parts[1])
            return 200, {}
        return 404, {"error": f"fake KFP server: no route for {method} {path}"}

    def calls(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def package(self, body: dict) -> tuple[dict, dict]:
        """(pipeline spec, platform spec) of the pipeline version a run / recurring run ``body`` names."""
        ref = body["pipeline_version_reference"]
        text = self.pipelines[ref["pipeline_id"]]["versions"][ref["pipeline_version_id"]]["package"]
        spec, platform = yaml.safe_load_all(text)
        return spec, platform

    def version_name(self, body: dict) -> str:
        ref = body["pipeline_version_reference"]
        return self.pipelines[ref["pipeline_id"]]["versions"][ref["pipeline_version_id"]]["display_name"]

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
    # the run names an uploaded, versioned pipeline: amnet, version <package version>-<content hash>
    assert "pipeline_spec" not in body
    spec, platform = server.package(body)
    assert spec["pipelineInfo"]["name"] == "amnet"
    assert "exec-train-amnet" in spec["deploymentSpec"]["executors"]
    assert "exec-train-amnet" in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    import amnet

    assert server.version_name(body).startswith(f"{amnet.__version__}-")
    assert [p["display_name"] for p in server.pipelines.values()] == ["amnet"]
    runtime = body["runtime_config"]
    assert runtime["pipeline_root"] == "s3://amnet/pipeline-root"
    params = runtime["parameters"]
    assert params["dataset_uri"] == "s3://amnet/datasets/synth" and params["variants"] == ["amnet", "no_memory"]
    # one mapping per stage, exactly the file's section with the --set overrides; the run file's
    # experiment (amnet) wins over --experiment for MLflow, as documented
    assert params["train_config"] == {**run_config.load("configs/demo.yaml").sections["train"], "epochs": 2,
                                      "lr": 0.005}
    assert params["pretrain_config"]["model"] == {"backbone": "small", "image_size": 64, "feature_dim": 256}
    assert set(params) == {"dataset_uri", "variants", "attribute_baseline", "image_baseline", "experiment",
                           "split_config",
                           "pretrain_config", "prototypes_config", "train_config", "featurize_config",
                           "evaluate_config", "register_config"}
    assert all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in server.requests)
    out = capsys.readouterr()
    assert "submitted run run-1 of pipeline version " in out.out
    assert TOKEN not in out.out + out.err


def test_submit_reuses_an_existing_experiment(kfp_env):
    from amnet_pipeline.cli import main_submit

    with FakeKfpServer(experiments={"amnet": "exp-42"}) as server:
        main_submit(["--host", server.url, "--set", "dataset=s3://amnet/ds", "--no-gpu"])
    assert server.calls("POST", "/apis/v2beta1/experiments") == []
    (run,) = server.calls("POST", "/apis/v2beta1/runs")
    assert run["body"]["experiment_id"] == "exp-42"
    assert "nvidia.com/gpu" not in json.dumps(server.package(run["body"]))


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
    assert server.package(body)[0]["pipelineInfo"]["name"] == "amnet"
    assert "scheduled 'weekly-retrain': rr-" in capsys.readouterr().out


def test_uploads_are_versioned_by_content(kfp_env):
    """The same YAML is one pipeline version, reused; other compile options are a new version of the
    same pipeline."""
    from amnet_pipeline.cli import main_submit

    with FakeKfpServer() as server:
        for flags in ([], [], ["--no-gpu"]):
            main_submit(["--host", server.url, "--set", "dataset=s3://amnet/ds", *flags])
        runs = [r["body"] for r in server.calls("POST", "/apis/v2beta1/runs")]
    (pipeline,) = server.pipelines.values()
    names = [server.version_name(r) for r in runs]
    assert names[0] == names[1] != names[2]
    assert runs[0]["pipeline_version_reference"] == runs[1]["pipeline_version_reference"]
    assert len(server.calls("POST", "/apis/v2beta1/pipelines/upload")) == 1  # the pipeline is created once
    assert len(server.calls("POST", "/apis/v2beta1/pipelines/upload_version")) == 2  # one per distinct YAML
    assert {v["display_name"] for v in pipeline["versions"].values()} == {"amnet", *names}


def test_reapplying_a_schedule_updates_the_recurring_run_instead_of_adding_one(kfp_env, capsys):
    from amnet_pipeline.cli import main_schedule

    args = ["--cron", "0 0 3 * * 0", "--name", "weekly-retrain", "--set", "dataset=s3://amnet/ds"]
    with FakeKfpServer() as server:
        assert main_schedule(["--host", server.url, *args]) == 0
        (first,) = server.recurring
        assert main_schedule(["--host", server.url, *args]) == 0  # unchanged: still one
        (second,) = server.recurring
        assert main_schedule(["--host", server.url, *args, "--cron", "0 0 4 * * 0", "--set", "train.epochs=2"]) == 0
        (third,) = server.recurring.items()
    assert len({first, second, third[0]}) == 3  # replaced each time (KFP has no update for recurring runs)
    body = third[1]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 4 * * 0"
    assert body["runtime_config"]["parameters"]["train_config"] == {"epochs": 2}
    assert [c["path"] for c in server.requests if c["method"] == "DELETE"] == [
        f"/apis/v2beta1/recurringruns/{first}", f"/apis/v2beta1/recurringruns/{second}"]
    out = capsys.readouterr().out
    assert f"updated 'weekly-retrain' (replaces {first})" in out and f"(replaces {second})" in out


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


# ------------------------------------------------------------------- what the command prints and exits with


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_submit_prints_the_run_id_and_its_ui_url(kfp_env, capsys):
    from amnet_pipeline.cli import main_submit

    with FakeKfpServer() as server:
        assert main_submit(["--host", server.url + "/", "--set", "dataset=s3://amnet/ds", "--no-gpu"]) == 0
    version = server.version_name(server.runs["run-1"])
    out = capsys.readouterr().out
    # exactly two lines on stdout (kfp's own "Run details:" print is not passed through)
    assert out.splitlines() == [f"submitted run run-1 of pipeline version {version} to experiment 'amnet'",
                                f"run details: {server.url}/#/runs/details/run-1"]
    assert server.calls("GET", "/apis/v2beta1/runs/run-1") == []  # no --wait: no polling


def test_ui_url_follows_kf_pipelines_ui_endpoint(kfp_env, monkeypatch, capsys):
    from amnet_pipeline.cli import main_submit

    monkeypatch.setenv("KF_PIPELINES_UI_ENDPOINT", "https://kubeflow.example.com/pipeline")
    with FakeKfpServer() as server:
        assert main_submit(["--host", server.url, "--set", "dataset=s3://amnet/ds", "--no-gpu"]) == 0
    assert "run details: https://kubeflow.example.com/pipeline/#/runs/details/run-1" in capsys.readouterr().out


def test_host_defaults_to_kf_pipelines_endpoint(kfp_env, monkeypatch, capsys):
    from amnet_pipeline.cli import main_schedule, main_submit

    with FakeKfpServer() as server:
        monkeypatch.setenv("KF_PIPELINES_ENDPOINT", server.url)
        assert main_submit(["--set", "dataset=s3://amnet/ds", "--no-gpu"]) == 0
        assert main_schedule(["--cron", "0 0 3 * * 0", "--set", "dataset=s3://amnet/ds", "--no-gpu"]) == 0
        # --host wins over the variable
        monkeypatch.setenv("KF_PIPELINES_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
        assert main_submit(["--host", server.url, "--set", "dataset=s3://amnet/ds", "--no-gpu"]) == 0
    assert len(server.runs) == 2 and len(server.recurring) == 1
    assert f"run details: {server.url}/#/runs/details/run-1" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["submit"], ["schedule", "--cron", "0 0 3 * * 0"]])
def test_no_host_and_no_endpoint_variable_is_one_usage_line(kfp_env, command, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["pipeline", *command, "--set", "dataset=s3://amnet/ds"])
    assert exc.value.code == 2  # usage: a required option is missing
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == [
        f"amnet pipeline {command[0]}: error: no Kubeflow Pipelines endpoint: pass --host URL or set "
        "$KF_PIPELINES_ENDPOINT"]


@pytest.mark.parametrize("states, code, final", [
    (["PENDING", "RUNNING", "SUCCEEDED"], 0, "SUCCEEDED"),
    (["RUNNING", "FAILED"], 1, "FAILED"),
    (["CANCELING", "CANCELED"], 1, "CANCELED"),  # a state kfp's own wait_for_run_completion never ends on
])
def test_submit_wait_exits_on_the_runs_final_state(kfp_env, monkeypatch, states, code, final, capsys):
    from amnet_pipeline import cli

    monkeypatch.setattr(cli, "POLL_SECONDS", 0.01)
    with FakeKfpServer(run_states=states) as server:
        assert main(["pipeline", "submit", "--host", server.url, "--set", "dataset=s3://amnet/ds", "--no-gpu",
                     "--wait", "--timeout", "60"]) == code
    assert len(server.calls("GET", "/apis/v2beta1/runs/run-1")) == len(states)  # polled until it ended
    out = capsys.readouterr().out.splitlines()
    assert out[1] == f"run details: {server.url}/#/runs/details/run-1"
    assert out[2:] == [f"run run-1 finished: {final}"]


def test_submit_wait_gives_up_after_the_timeout(kfp_env, monkeypatch, capsys):
    from amnet_pipeline import cli

    monkeypatch.setattr(cli, "POLL_SECONDS", 0.05)
    with FakeKfpServer(run_states=["RUNNING"]) as server:
        assert main(["pipeline", "submit", "--host", server.url, "--set", "dataset=s3://amnet/ds", "--no-gpu",
                     "--wait", "--timeout", "0.3"]) == 1
    assert len(server.calls("GET", "/apis/v2beta1/runs/run-1")) >= 2
    assert capsys.readouterr().out.splitlines()[-1] == (
        "run run-1 is still RUNNING after 0.3 s; stopped waiting (the run goes on)")


def test_timeout_without_wait_is_a_usage_error(kfp_env, capsys):
    with FakeKfpServer() as server, pytest.raises(SystemExit) as exc:
        main(["pipeline", "submit", "--host", server.url, "--set", "dataset=s3://amnet/ds", "--timeout", "5"])
    assert exc.value.code == 2 and "--timeout needs --wait" in capsys.readouterr().err
    assert server.requests == []


@pytest.mark.parametrize("command", [["submit"], ["schedule", "--cron", "0 0 3 * * 0"]])
def test_unreachable_server_exits_4_with_one_line(kfp_env, command, capsys):
    host = f"http://127.0.0.1:{closed_port()}"
    assert main(["pipeline", *command, "--host", host, "--set", "dataset=s3://amnet/ds", "--no-gpu"]) == 4
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and TOKEN not in err
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    assert line.startswith(f"amnet pipeline {command[0]}: error: Kubeflow Pipelines API at {host} is not "
                           "reachable (") and "$KF_PIPELINES_ENDPOINT" in line, line


def test_a_refusing_server_is_one_line_naming_the_status(kfp_env, capsys):
    with FakeKfpServer(refuse={("POST", "/apis/v2beta1/experiments"): 403}) as server:
        assert main(["pipeline", "submit", "--host", server.url, "--set", "dataset=s3://amnet/ds",
                     "--no-gpu"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and TOKEN not in err
    (line,) = [line for line in err.splitlines() if ": error: " in line]
    assert f"Kubeflow Pipelines API at {server.url} refused the request (HTTP 403" in line
    assert line.endswith("check $KF_PIPELINES_TOKEN or your kube config"), line
    assert server.runs == {}
