"""The Kubernetes manifests (``manifests/``) and the scheduled retraining, validated offline.

No cluster here: ``kubectl kustomize`` builds the base and each overlay (from a copy of ``manifests/``
whose git-ignored ``*.env`` files are made from the committed ``*.env.example`` templates), every object
validates against the Kubernetes JSON schemas of ``kubernetes-validate``, and the tests check the rules
the deployment promises: security context, resources and probes on every container, least-privilege
RBAC, the network paths, the ``kfp-launcher`` S3 provider, secret names and keys the compiled pipeline
reads, no secret value anywhere in the repository, and the recurring-run file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import amnet

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SCHEDULE_FILE = MANIFESTS / "schedule" / "recurring-run.yaml"
KUBERNETES_VERSION = "1.30.0"  # oldest minor still common in managed clusters; its schemas ship with the package
TARGETS = {"base": "base", "local": "overlays/local", "production": "overlays/production"}
NAMESPACES = {"base": "amnet", "local": "kubeflow", "production": "amnet"}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")  # Jobs run to completion: no probes needed
# Containers that cannot run with a read-only root file system, with the reason. None today.
WRITABLE_ROOT_ALLOWED: dict[str, str] = {}
PROJECT_IMAGE = f"ghcr.io/amnet-project/amnet:{amnet.__version__}"  # components/images.py's default


# ------------------------------------------------------------------------------------------ builds


def kubectl() -> str:
    found = shutil.which("kubectl") or ("/usr/bin/kubectl" if Path("/usr/bin/kubectl").exists() else None)
    if found is None:
        pytest.skip("kubectl not installed: `kubectl kustomize` builds the manifests")
    return found


@pytest.fixture(scope="module")
def manifest_copy(tmp_path_factory) -> Path:
    """manifests/ copied, with every secret env file made from its committed example."""
    copy = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("*.env"))
    examples = list(copy.rglob("*.env.example"))
    assert examples, "no *.env.example templates under manifests/"
    for example in examples:
        shutil.copyfile(example, example.with_name(example.name.removesuffix(".example")))
    return copy


@pytest.fixture(scope="module")
def built(manifest_copy) -> dict[str, list[dict]]:
    """``kubectl kustomize`` output per target, as a list of objects."""
    binary = kubectl()
    out = {}
    for name, target in TARGETS.items():
        result = subprocess.run([binary, "kustomize", str(manifest_copy / target)], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr[-3000:]}"
        out[name] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return out


def objects(built, target: str, kind: str | None = None) -> list[dict]:
    return [o for o in built[target] if kind is None or o["kind"] == kind]


def one(built, target: str, kind: str, name: str) -> dict:
    found = [o for o in objects(built, target, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"{target}: expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(obj: dict) -> dict:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def workloads(built, target: str) -> list[dict]:
    return [o for o in built[target] if o["kind"] in WORKLOADS]


# ------------------------------------------------------------------------------ build and validate


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_kustomize_builds(built, target):
    kinds = {o["kind"] for o in built[target]}
    assert {"Deployment", "Job", "Service", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy",
            "ConfigMap", "Secret"} <= kinds, f"{target}: missing kinds, got {sorted(kinds)}"
    for obj in built[target]:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACES[target], \
                f"{target}: {obj['kind']}/{obj['metadata']['name']} not in namespace {NAMESPACES[target]}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "amnet"


def test_kustomize_refuses_to_build_without_the_secret_env_files(tmp_path):
    binary = kubectl()
    copy = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("*.env"))
    result = subprocess.run([binary, "kustomize", str(copy / "base")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and ".env" in result.stderr


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_object_validates_against_the_kubernetes_schemas(built, target):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (in the dev extras)")
    failures = []
    for obj in built[target]:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- containers and pods


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_container_runs_locked_down(built, target):
    assert workloads(built, target)
    for obj in workloads(built, target):
        pod = pod_spec(obj)
        pod_ctx = pod.get("securityContext", {})
        for c in containers(obj):
            where = f"{target}: {obj['kind']}/{obj['metadata']['name']} container {c['name']}"
            ctx = c.get("securityContext", {})
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
            assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) != 0, f"{where}: runs as uid 0"
            assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
            assert ctx.get("privileged", False) is False, f"{where}: privileged"
            assert "ALL" in ctx.get("capabilities", {}).get("drop", []), f"{where}: capabilities not dropped"
            assert not ctx.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
            if c["name"] not in WRITABLE_ROOT_ALLOWED:
                assert ctx.get("readOnlyRootFilesystem") is True, f"{where}: root file system is writable"
            seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", f"{where}: no RuntimeDefault seccomp profile"
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), f"{where}: {part} cpu/memory"
            assert c["image"].split(":")[-1] not in ("latest", c["image"]), f"{where}: image {c['image']} not pinned"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_long_running_containers_have_probes(built, target):
    """Deployments and StatefulSets need readiness and liveness probes; a Job runs to completion and
    has none (the Job controller's own success / backoff tracking is its health check)."""
    for obj in workloads(built, target):
        if obj["kind"] not in LONG_RUNNING:
            continue
        for c in pod_spec(obj)["containers"]:
            where = f"{target}: {obj['kind']}/{obj['metadata']['name']} container {c['name']}"
            assert c.get("readinessProbe"), f"{where}: no readinessProbe"
            assert c.get("livenessProbe"), f"{where}: no livenessProbe"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_server_pods_mount_no_api_token(built, target):
    for obj in workloads(built, target):
        assert pod_spec(obj).get("automountServiceAccountToken") is False, \
            f"{target}: {obj['kind']}/{obj['metadata']['name']} mounts a Kubernetes API token it never uses"


# ----------------------------------------------------------------------------------------- MLflow


def test_mlflow_server_uses_postgres_from_a_secret_and_proxies_artifacts_to_s3(built):
    deployment = one(built, "base", "Deployment", "amnet-mlflow")
    (c,) = pod_spec(deployment)["containers"]
    assert c["image"] == PROJECT_IMAGE, "the MLflow server runs from the amnet CPU image of this version"
    assert c["command"] == ["mlflow"] and c["args"][0] == "server"
    assert "--serve-artifacts" in c["args"]
    assert "--artifacts-destination=s3://amnet/mlflow" in c["args"]
    env = env_of(c)
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@")
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_HOST", "POSTGRES_DB"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "amnet-postgres"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "amnet-s3"
    assert "amnet-mlflow:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    service = one(built, "base", "Service", "amnet-mlflow")
    assert service["spec"]["ports"][0]["port"] == 5000


def test_stores_are_stateful_with_volumes(built):
    postgres = one(built, "base", "StatefulSet", "amnet-postgres")
    assert postgres["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert pod_spec(postgres)["containers"][0]["image"].startswith("postgres:")
    seaweed = one(built, "base", "StatefulSet", "amnet-seaweedfs")
    (c,) = pod_spec(seaweed)["containers"]
    assert c["image"].startswith("chrislusf/seaweedfs:")
    assert "server" in c["args"] and "-s3" in c["args"] and "-s3.port=8333" in c["args"]
    assert seaweed["spec"]["volumeClaimTemplates"]
    one(built, "base", "Service", "amnet-seaweedfs")
    one(built, "base", "Service", "amnet-postgres")


def test_bucket_job_creates_the_amnet_bucket(built):
    job = one(built, "base", "Job", "amnet-bucket-setup")
    (c,) = pod_spec(job)["containers"]
    assert env_of(c)["BUCKET"]["value"] == "amnet"
    assert "aws s3 mb" in " ".join(c["args"])
    assert pod_spec(job)["restartPolicy"] in ("OnFailure", "Never")


# ---------------------------------------------------------------------------------- secrets / KFP


def test_secrets_carry_the_names_and_keys_the_compiled_pipeline_reads(built):
    import argparse

    from amnet_pipeline.cli import _compile_flags

    parser = argparse.ArgumentParser()
    _compile_flags(parser)
    defaults = parser.parse_args([])
    s3 = one(built, "base", "Secret", defaults.s3_secret)
    mlflow = one(built, "base", "Secret", defaults.mlflow_secret)
    required_s3 = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    optional_s3 = {"AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "MLFLOW_S3_ENDPOINT_URL"}
    assert required_s3 <= set(s3["data"]) <= required_s3 | optional_s3
    assert "MLFLOW_TRACKING_URI" in mlflow["data"]
    one(built, "base", "Secret", "amnet-postgres")


def test_pipeline_secret_key_names_match_the_pipeline_wiring():
    """The keys above are the ones amnet_pipeline mounts (checked on the module's source, so this test
    does not need to build the pipeline)."""
    source = (ROOT / "pipeline" / "amnet_pipeline.py").read_text()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION",
                "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_URI"):
        assert f'"{key}"' in source, f"pipeline/amnet_pipeline.py no longer reads {key}"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_kfp_launcher_points_the_pipeline_root_at_s3(built, target):
    launcher = one(built, target, "ConfigMap", "kfp-launcher")
    assert launcher["data"]["defaultPipelineRoot"] == "s3://amnet/pipeline-root"
    providers = yaml.safe_load(launcher["data"]["providers"])
    default = providers["s3"]["default"]
    ref = default["credentials"]["secretRef"]
    assert default["credentials"]["fromEnv"] is False
    secret = one(built, target, "Secret", ref["secretName"])
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(secret["data"])
    assert isinstance(default["disableSSL"], bool) and default["region"]
    if target == "production":
        assert "seaweedfs" not in default["endpoint"] and default["disableSSL"] is False
    else:
        assert default["endpoint"] == "amnet-seaweedfs:8333" and default["forcePathStyle"] is True


# ------------------------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_pipeline_service_account_has_least_privilege(built, target):
    one(built, target, "ServiceAccount", "amnet-pipeline")
    assert not objects(built, target, "ClusterRole") and not objects(built, target, "ClusterRoleBinding")
    role = one(built, target, "Role", "amnet-pipeline")
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}: {rule}"
        assert set(rule["verbs"]) <= {"get", "list", "watch", "create", "patch"}, rule
        assert "delete" not in rule["verbs"] and "escalate" not in rule["verbs"]
        if "secrets" in rule["resources"] or "configmaps" in rule["resources"]:
            assert rule.get("resourceNames"), f"{rule['resources']} must be limited by resourceNames"
            assert set(rule["verbs"]) == {"get"}
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert set(secret_rules[0]["resourceNames"]) == {"amnet-s3", "amnet-mlflow"}
    binding = one(built, target, "RoleBinding", "amnet-pipeline")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "amnet-pipeline"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "amnet-pipeline",
                                    "namespace": NAMESPACES[target]}]


def test_trainer_component_grants_trainjobs_and_runtime_reads_only(manifest_copy, tmp_path):
    """manifests/components/trainer (opt-in, for --train-nodes): added to the local overlay (as its
    kustomization.yaml says) it binds the pipeline's service account, in the overlay's namespace, to TrainJob
    create/read and read-only access to runtimes, pods, logs and events; the only cluster-scoped grant
    reads ClusterTrainingRuntimes."""
    copy = tmp_path / "manifests"
    shutil.copytree(manifest_copy, copy)
    overlay = copy / "overlays" / "local"
    text = (overlay / "kustomization.yaml").read_text()
    (overlay / "kustomization.yaml").write_text(text + "\ncomponents:\n  - ../../components/trainer\n")
    result = subprocess.run([kubectl(), "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    built = {"t": docs}
    role = one(built, "t", "Role", "amnet-trainjobs")
    verbs = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs[("trainer.kubeflow.org", "trainjobs")] == {"create", "get", "list", "watch"}
    assert all(not v & {"delete", "update", "patch", "escalate", "bind", "*"} for v in verbs.values()), verbs
    assert not any("secrets" in r for _, r in verbs)
    (cluster_role,) = objects(built, "t", "ClusterRole")
    assert cluster_role["rules"] == [{"apiGroups": ["trainer.kubeflow.org"], "resources": ["clustertrainingruntimes"],
                                      "verbs": ["get", "list"]}]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        (binding,) = [b for b in objects(built, "t", kind) if b["metadata"]["name"].startswith("amnet-train")]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "amnet-pipeline",
                                        "namespace": NAMESPACES["local"]}]
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for obj in (role, cluster_role):
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


# -------------------------------------------------------------------------------- network policies


def _policy(built, target, name):
    return one(built, target, "NetworkPolicy", name)["spec"]


def test_namespace_denies_ingress_by_default_and_allows_only_the_pipeline_paths(built):
    deny = _policy(built, "base", "amnet-default-deny-ingress")
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and not deny.get("ingress")

    mlflow = _policy(built, "base", "amnet-mlflow-ingress")
    assert mlflow["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "amnet-mlflow"}
    sources = [peer["podSelector"]["matchLabels"] for peer in mlflow["ingress"][0]["from"]]
    assert {"pipelines.kubeflow.org/v2_component": "true"} in sources
    assert [p["port"] for p in mlflow["ingress"][0]["ports"]] == [5000]

    postgres = _policy(built, "base", "amnet-postgres-ingress")
    assert postgres["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "amnet-mlflow"}}}]
    assert [p["port"] for p in postgres["ingress"][0]["ports"]] == [5432]

    seaweed = _policy(built, "base", "amnet-seaweedfs-ingress")
    assert {"podSelector": {}} in seaweed["ingress"][0]["from"]
    assert [p["port"] for p in seaweed["ingress"][0]["ports"]] == [8333]


def test_every_server_port_is_reachable_only_through_a_policy(built):
    """Each Service's pods are selected by a policy that opens exactly the Service's port."""
    policies = objects(built, "base", "NetworkPolicy")
    for service in objects(built, "base", "Service"):
        selector = service["spec"]["selector"]
        ports = {p["port"] for p in service["spec"]["ports"]}
        opened = set()
        for policy in policies:
            match = policy["spec"]["podSelector"].get("matchLabels", {})
            if match and match.items() <= selector.items():
                opened |= {p["port"] for rule in policy["spec"].get("ingress", []) for p in rule.get("ports", [])}
        assert ports == opened, f"Service {service['metadata']['name']}: ports {ports}, policies open {opened}"


# ---------------------------------------------------------------------------------------- overlays


def test_local_overlay_runs_beside_standalone_kfp(built):
    assert not objects(built, "local", "Namespace"), "the local overlay must not relabel `kubeflow`"
    names = {o["metadata"]["name"] for o in objects(built, "local", "NetworkPolicy")}
    assert "amnet-default-deny-ingress" not in names, "a namespace-wide deny would cut KFP's own services off"
    assert {"amnet-mlflow-ingress", "amnet-postgres-ingress", "amnet-seaweedfs-ingress"} <= names
    nodeport = one(built, "local", "Service", "amnet-mlflow-nodeport")
    assert nodeport["spec"]["type"] == "NodePort"
    base_mlflow = pod_spec(one(built, "base", "Deployment", "amnet-mlflow"))["containers"][0]
    local_mlflow = pod_spec(one(built, "local", "Deployment", "amnet-mlflow"))["containers"][0]
    assert local_mlflow["resources"] != base_mlflow["resources"]


def test_production_overlay_uses_external_s3_and_postgres(built):
    names = {(o["kind"], o["metadata"]["name"]) for o in built["production"]}
    for gone in [("StatefulSet", "amnet-seaweedfs"), ("Service", "amnet-seaweedfs"),
                 ("StatefulSet", "amnet-postgres"), ("Service", "amnet-postgres"),
                 ("NetworkPolicy", "amnet-postgres-ingress"), ("NetworkPolicy", "amnet-seaweedfs-ingress")]:
        assert gone not in names, f"production still deploys {gone}"
    assert ("NetworkPolicy", "amnet-default-deny-ingress") in names
    deployment = one(built, "production", "Deployment", "amnet-mlflow")
    assert deployment["spec"]["replicas"] >= 2
    one(built, "production", "PodDisruptionBudget", "amnet-mlflow")
    (c,) = pod_spec(deployment)["containers"]
    assert env_of(c)["POSTGRES_HOST"]["valueFrom"]["secretKeyRef"]["name"] == "amnet-postgres"


# ------------------------------------------------------------------------------- no secret values

SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"aws_secret_access_key\s*[=:]\s*[\"']?([A-Za-z0-9/+=]{20,})", re.I),
    "private key": re.compile("-----BEGIN " + r"(?:[A-Z]+ )*PRIVATE KEY-----"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@$\"'{}]+:([^\s@/$\"'{}()]{6,})@", re.I),
}
# Tests feed made-up URLs with passwords to the redaction tests; other rules still apply to tests/.
URL_PASSWORD_EXEMPT = ("tests/",)
# Values that announce themselves as fakes (AWS's documented example key, test fixtures) or templates.
FAKE_MARKERS = ("EXAMPLE", "TEST", "FAKE", "NOTREAL", "DUMMY", "REPLACE_WITH", "PLACEHOLDER", "CHANGEME")
SECRET_NAMES = re.compile(r"(PASSWORD|SECRET|TOKEN|PRIVATE_KEY|ACCESS_KEY)", re.I)


def repository_files() -> list[Path]:
    """Every file git would commit: tracked, plus new files not ignored."""
    result = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return [ROOT / line for line in result.stdout.splitlines() if (ROOT / line).is_file()]


def test_no_secret_value_in_the_repository():
    files = repository_files()
    assert any(f.name == "test_manifests.py" for f in files)
    found = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if path.name.endswith(".env") or path.name == ".env":
            found.append(f"{rel}: an env file is committed (only *.env.example templates may be)")
        if path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # binary
        for what, pattern in SECRET_PATTERNS.items():
            if what == "password in a URL" and rel.startswith(URL_PASSWORD_EXEMPT):
                continue
            for match in pattern.finditer(text):
                value = match.group(0)
                if any(marker in value.upper() for marker in FAKE_MARKERS):
                    continue
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{rel}:{line}: {what}")
    assert not found, "secret-looking values:\n" + "\n".join(found)


def test_no_password_in_the_manifests():
    found = []
    for path in sorted(MANIFESTS.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(ROOT).as_posix()
        if path.name.endswith(".env.example"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                key, sep, value = line.partition("=")
                if line.startswith("#") or not sep:
                    continue
                if SECRET_NAMES.search(key) and value and not value.startswith("REPLACE_WITH_"):
                    found.append(f"{rel}:{number}: {key} has a value; templates hold REPLACE_WITH_... only")
        elif path.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(path.read_text()):
                if not isinstance(doc, dict):
                    continue
                if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
                    found.append(f"{rel}: Secret {doc['metadata']['name']} with values (use secretGenerator)")
                found += [f"{rel}: {item}" for item in _literal_secret_env(doc)]
                for generator in doc.get("secretGenerator", []) or []:
                    if generator.get("literals"):
                        found.append(f"{rel}: secretGenerator {generator['name']} has literals (use envs)")
    assert not found, "\n".join(found)


def _literal_secret_env(node) -> list[str]:
    """``env`` entries whose name looks secret and whose value is written inline."""
    out = []
    if isinstance(node, dict):
        if "name" in node and "value" in node and isinstance(node["name"], str) and SECRET_NAMES.search(node["name"]):
            out.append(f"env {node['name']} has an inline value (use secretKeyRef)")
        for value in node.values():
            out += _literal_secret_env(value)
    elif isinstance(node, list):
        for value in node:
            out += _literal_secret_env(value)
    return out


def test_env_files_are_git_ignored_and_their_templates_are_not():
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    for example in sorted((MANIFESTS / "base" / "secrets").glob("*.env.example")):
        rel = example.relative_to(ROOT).as_posix()
        assert not ignored(rel), f"{rel} is git-ignored: the template would never be committed"
        assert ignored(rel.removesuffix(".example")), f"{rel.removesuffix('.example')} is not git-ignored"


# ----------------------------------------------------------------------------- scheduled retraining


def test_recurring_run_file_declares_a_weekly_non_overlapping_schedule():
    raw = yaml.safe_load(SCHEDULE_FILE.read_text())
    assert len(raw["cron"].split()) == 6, "KFP cron has 6 fields, seconds first"
    assert raw["cron"] == "0 0 3 * * 0"
    assert raw["no_catchup"] is True and raw["max_concurrency"] == 1

    from amnet_pipeline.schedule_file import load_recurring_run

    spec = load_recurring_run(SCHEDULE_FILE)
    assert spec.cron == "0 0 3 * * 0" and spec.no_catchup is True and spec.max_concurrency == 1
    assert spec.config["dataset"].startswith("s3://amnet/")
    defaults = spec.cli_defaults()
    assert defaults["cron"] == "0 0 3 * * 0" and defaults["name"] == "amnet-weekly-retrain"
    assert defaults["gpu_toleration"] == ["key=nvidia.com/gpu,operator=Exists,effect=NoSchedule"]


def test_recurring_run_service_account_exists_in_the_manifests(built):
    from amnet_pipeline.schedule_file import load_recurring_run

    spec = load_recurring_run(SCHEDULE_FILE)
    one(built, "base", "ServiceAccount", spec.service_account)


def test_recurring_run_compile_options_are_valid():
    import argparse

    from amnet_pipeline.cli import _compile_flags, compile_options
    from amnet_pipeline.schedule_file import load_recurring_run

    parser = argparse.ArgumentParser()
    _compile_flags(parser)
    defaults = load_recurring_run(SCHEDULE_FILE).cli_defaults()
    parser.set_defaults(**{k: v for k, v in defaults.items() if k in {a.dest for a in parser._actions}})
    options = compile_options(parser.parse_args([]))
    assert options.use_gpu is True and options.retries == 3
    assert options.s3_secret == "amnet-s3" and options.mlflow_secret == "amnet-mlflow"
    assert options.gpu_tolerations == ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
    assert options.checkpoint_root == "s3://amnet/pipeline-root"
    assert options.resources(gpu_task=False) == {"cpu_request": "1", "cpu_limit": "2", "memory_request": "2Gi",
                                                 "memory_limit": "8Gi"}
    assert options.resources(gpu_task=True) == {"cpu_request": "4", "cpu_limit": "8", "memory_request": "16Gi",
                                                "memory_limit": "32Gi"}


@pytest.mark.parametrize("change, message", [
    ({"cron": "0 3 * * 0"}, "prepend the seconds"),
    ({"max_concurrency": 2}, "max_concurrency must be 1"),
    ({"no_catchup": False}, "no_catchup must be true"),
    ({"schedule": "weekly"}, "unknown key(s) schedule"),
    ({"compile": {"gpu_selector": {}}}, "compile: unknown key(s) gpu_selector"),
    ({"compile": {"gpu_tolerations": [{"key": "x", "effect": "Sometimes"}]}}, "effect must be one of"),
    ({"params": {"epochs": 2}}, "unknown key(s) params"),
    ({"config": ["dataset"]}, "config: expected a mapping"),
    ({"config": {"train": {"epoch": 2}}}, "config: train: unknown TrainConfig key 'epoch'"),
])
def test_recurring_run_file_errors_name_the_file_and_the_fix(tmp_path, change, message):
    from amnet_pipeline.schedule_file import load_recurring_run

    from amnet.errors import AmnetError

    data = yaml.safe_load(SCHEDULE_FILE.read_text())
    data.update(change)
    path = tmp_path / "recurring-run.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(AmnetError) as err:
        load_recurring_run(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_schedule_from_file_creates_the_declared_recurring_run_on_a_fake_kfp_server(tmp_path, monkeypatch, capsys):
    """``amnet pipeline schedule --from-file`` against the fake KFP API server of the submit tests;
    a flag on the command line overrides the file."""
    from amnet_pipeline.cli import main_schedule
    from kfp.client import client

    from tests.pipeline.test_submit_fake_kfp_server import TOKEN, FakeKfpServer

    monkeypatch.setattr(client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    with FakeKfpServer() as server:
        rc = main_schedule(["--host", server.url, "--from-file", str(SCHEDULE_FILE), "--set", "train.epochs=2"])
    assert rc == 0
    (recurring,) = server.calls("POST", "/apis/v2beta1/recurringruns")
    body = recurring["body"]
    assert body["display_name"] == "amnet-weekly-retrain"
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"
    assert body["no_catchup"] is True and int(body["max_concurrency"]) == 1 and body["mode"] == "ENABLE"
    assert body["service_account"] == "amnet-pipeline"
    params = body["runtime_config"]["parameters"]
    assert params["dataset_uri"] == "s3://amnet/datasets/synth" and params["train_config"]["epochs"] == 2
    assert params["train_config"]["steps_per_epoch"] == 150  # the file's own value, beside the override
    assert params["variants"] == ["amnet", "no_memory", "no_ranking"] and params["experiment"] == "amnet"
    spec, platform = server.package(body)
    tolerations = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-amnet"][
        "tolerations"]
    assert tolerations[0]["key"] == "nvidia.com/gpu"
    train = spec["deploymentSpec"]["executors"]["exec-train-amnet"]["container"]["resources"]
    assert (train["resourceCpuLimit"], train["resourceMemoryLimit"]) == ("8", "32Gi")  # the file's compile keys
    assert "scheduled 'amnet-weekly-retrain': rr-" in capsys.readouterr().out


def test_schedule_without_cron_or_file_is_a_usage_error(capsys):
    from amnet_pipeline.cli import main_schedule

    with pytest.raises(SystemExit) as exc:
        main_schedule(["--host", "http://127.0.0.1:9", "--set", "dataset=s3://amnet/ds"])
    assert exc.value.code == 2
    assert "--cron" in capsys.readouterr().err
