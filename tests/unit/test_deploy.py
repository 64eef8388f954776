"""Static checks of deploy/: Kubernetes schemas (kubernetes-validate) and the wiring between the manifests."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as k8s_utils

from kit import container
from kit import server as srv
from kit.config import LLM_MODEL, DeploymentConfig
from kit.repository import render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ADAPTER_VALUES = ROOT / "deploy" / "prometheus-adapter-values.yaml"
K8S_VERSION = k8s_utils.latest_version()
# Kinds with no schema in kubernetes-validate: checked structurally below.
NO_SCHEMA = {("kustomize.config.k8s.io/v1beta1", "Kustomization"), ("monitoring.coreos.com/v1", "ServiceMonitor")}
NOT_IN_KUSTOMIZATION = {"secret.example.yaml", "servicemonitor.yaml"}
HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{20,}")


def documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


def one(kind: str, name: str | None = None) -> dict:
    found = [d for _, d in documents() if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def quantity(text: str | int) -> int:
    """Kubernetes quantities in bytes (Ki/Mi/Gi/Ti and plain numbers)."""
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", str(text))
    assert match, f"unsupported quantity {text!r}"
    return int(match[1]) * 1024 ** ["", "Ki", "Mi", "Gi", "Ti"].index(match[2] or "")


@pytest.fixture(scope="module")
def deployment() -> dict:
    return one("Deployment", "triton-vllm")


@pytest.fixture(scope="module")
def pod(deployment) -> dict:
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def server(pod) -> dict:
    (c,) = [c for c in pod["containers"] if c["name"] == "triton"]
    return c


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(
    "name, doc",
    [(n, d) for n, d in documents() if (d["apiVersion"], d["kind"]) not in NO_SCHEMA],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_manifest_matches_kubernetes_schema(name, doc):
    """Each manifest validates against the Kubernetes JSON schema of its kind, strictly (no unknown fields)."""
    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_check_is_not_vacuous(deployment):
    """A misspelt probe field and a string port are rejected by the same validation."""
    broken = copy.deepcopy(deployment)
    c = broken["spec"]["template"]["spec"]["containers"][0]
    c["readinesProbe"] = c.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_every_kind_is_known():
    """No manifest silently escapes validation: schemaless kinds are only the two listed ones."""
    kinds = {(d["apiVersion"], d["kind"]) for _, d in documents()}
    assert kinds & NO_SCHEMA == NO_SCHEMA
    assert {k for _, k in kinds} >= {"Deployment", "Service", "PersistentVolumeClaim", "HorizontalPodAutoscaler",
                                     "Secret", "ConfigMap"}


def test_kustomization_lists_the_manifests():
    """kustomization.yaml lists every manifest except the example Secret and the optional ServiceMonitor."""
    kustomization = one("Kustomization")
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    assert set(resources) == {p.name for p in K8S.glob("*.yaml")} - NOT_IN_KUSTOMIZATION - {"kustomization.yaml"}
    (image,) = kustomization["images"]
    name, _, tag = one("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"].partition(":")
    assert image["name"] == name and image["newTag"] == tag


# --------------------------------------------------------------------------- the pod


def test_image_is_the_compose_image(pod):
    """Both containers run the image docker-compose.yml builds, with an explicit version tag."""
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    image = compose["services"]["triton"]["image"]
    for c in pod["initContainers"] + pod["containers"]:
        assert c["image"] == image
    assert not image.endswith(":latest") and re.search(r":\d+\.\d+\.\d+$", image)


def test_gpu_request(pod, server):
    """The server container requests and is limited to exactly one NVIDIA GPU; the init container none."""
    resources = server["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"].get("nvidia.com/gpu", 1) == resources["limits"]["nvidia.com/gpu"]
    assert quantity(resources["limits"]["memory"]) >= quantity(resources["requests"]["memory"]) >= quantity("16Gi")
    for init in pod["initContainers"]:
        assert "nvidia.com/gpu" not in init.get("resources", {}).get("limits", {})
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod.get("tolerations", []))


def test_container_ports_are_the_entrypoints(server):
    """Container ports are named http/grpc/metrics at the ports kit.container passes to tritonserver."""
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": container.HTTP_PORT, "grpc": container.GRPC_PORT, "metrics": container.METRICS_PORT}


def test_probes(server):
    """Startup probes /v2/health/ready on the http port; readiness and liveness run the kit's stub-aware check."""
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    get = server["startupProbe"]["httpGet"]
    assert get["path"] == "/v2/health/ready"
    assert ports.get(get["port"], get["port"]) == container.HTTP_PORT
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10 * 60
    parser = container._parser()
    for probe, live in (("readinessProbe", False), ("livenessProbe", True)):
        argv = server[probe]["exec"]["command"]
        assert argv[:3] == ["python3", "-m", "kit.container"], probe
        args = parser.parse_args(argv[3:])
        assert args.action == "healthcheck" and args.live is live, probe
        assert server[probe]["timeoutSeconds"] >= 5, f"{probe}: a Python start-up needs a few seconds"
    live = server["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 30


def test_termination_grace_covers_prestop_and_drain(pod, server):
    """terminationGracePeriodSeconds covers the preStop pause plus Triton's drain (--exit-timeout-secs)."""
    command = server["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = int(command[1])
    assert 0 < pause <= 15
    assert f"--exit-timeout-secs={srv.DRAIN_S}" in container.tritonserver_command(container.Settings(), "/r")
    assert pod["terminationGracePeriodSeconds"] >= pause + srv.DRAIN_S + 5


def test_container_arguments_are_entrypoint_subcommands(pod):
    """The init container downloads, the server serves: both are kit.container subcommands."""
    parser = container._parser()
    (init,) = pod["initContainers"]
    assert parser.parse_args(init["args"]).action == "download"
    (server,) = pod["containers"]
    assert parser.parse_args(server["args"]).action == "serve"


def test_shared_memory_volume(pod, server):
    """/dev/shm is a memory-backed emptyDir of at least 1 Gi, within the container's memory limit."""
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    shm = volumes[mounts["/dev/shm"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    assert quantity(shm["sizeLimit"]) >= quantity("1Gi")
    assert quantity(shm["sizeLimit"]) < quantity(server["resources"]["limits"]["memory"])


def test_models_volume(pod, server):
    """Both containers mount the models PVC where MODELS_DIR points, and it holds Llama-3-8B's ~16 GB."""
    pvc = one("PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod["volumes"]}
    models_dir = one("ConfigMap")["data"]["MODELS_DIR"]
    for c in pod["initContainers"] + pod["containers"]:
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert volumes[mounts[models_dir]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert quantity(pvc["spec"]["resources"]["requests"]["storage"]) >= quantity("32Gi")


def test_configmap_is_read_by_the_entrypoint(pod):
    """The ConfigMap's variables parse with kit.container.settings_from_env into the GPU default."""
    data = one("ConfigMap")["data"]
    for c in pod["initContainers"] + pod["containers"]:
        assert {"configMapRef": {"name": one("ConfigMap")["metadata"]["name"]}} in c["envFrom"]
    settings = container.settings_from_env(data)
    assert settings.model_id == container.LLAMA3_REPO_ID
    assert str(settings.models_dir) == "/models" and settings.params == {}
    assert settings.token is None


def test_token_only_from_the_secret(pod):
    """Only the init container gets the hub token, from the hf-token Secret; no manifest holds a token value."""
    secret = one("Secret")
    (init,) = pod["initContainers"]
    (env,) = [e for e in init["env"] if e["name"] == "HUGGINGFACE_HUB_TOKEN"]
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    for c in pod["containers"]:
        names = {e["name"] for e in c.get("env", [])}
        assert not names & {"HUGGINGFACE_HUB_TOKEN", "HF_TOKEN"}
    for name, doc in documents():
        text = yaml.safe_dump(doc)
        assert not HF_TOKEN.search(text), name
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for e in c.get("env", []):
                assert "TOKEN" not in e["name"] or "value" not in e, name


def test_secret_example_holds_a_placeholder():
    """The example Secret carries an obvious placeholder, not a real token."""
    secret = one("Secret")
    assert secret["type"] == "Opaque"
    (value,) = secret["stringData"].values()
    assert value.startswith("<") and value.endswith(">")
    assert not HF_TOKEN.search(value)
    assert "--from-env-file=.env" in (K8S / "secret.example.yaml").read_text()


def test_security_context(pod):
    """The pod runs as the image's unprivileged uid 1000, without privilege escalation or capabilities."""
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 1000 and security["fsGroup"] == 1000
    dockerfile_user = re.findall(r"^USER\s+(\d+)", (ROOT / "docker" / "Dockerfile").read_text(), re.M)[-1]
    assert int(dockerfile_user) == security["runAsUser"]
    for c in pod["initContainers"] + pod["containers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_rollout_needs_no_spare_gpu(deployment):
    """Rolling updates replace pods without a surge pod (which would need another free GPU)."""
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxSurge"] == 0 and rolling["maxUnavailable"] == 1


# --------------------------------------------------------------------------- Service and metrics


def test_service_matches_pod(deployment, server):
    """The Service selects the pods and maps http/grpc/metrics onto the container ports of the same name."""
    service = one("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    container_ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(service_ports) == set(container_ports)
    for name, port in service_ports.items():
        assert port["targetPort"] == name
        assert port["port"] == container_ports[name]
    assert service["spec"]["type"] == "ClusterIP"


def test_scrape_annotations(deployment, server):
    """The pod's prometheus.io annotations point at the metrics container port."""
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_service_monitor():
    """The ServiceMonitor selects the Service and scrapes its metrics port."""
    monitor = one("ServiceMonitor")
    service = one("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"


# --------------------------------------------------------------------------- autoscaling


def test_hpa_targets_the_deployment_on_a_queue_metric(deployment):
    """The HPA (autoscaling/v2) scales the Deployment on the pipeline's waiting-for-first-token gauge, per pod."""
    from kit.triton_models.load_gauges import NAMES

    hpa = one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment",
                                                                      deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == NAMES["waiting"][0]
    assert metric["pods"]["target"]["type"] == "AverageValue"
    assert float(metric["pods"]["target"]["averageValue"]) > 0
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_adapter_rule_serves_the_hpa_metric():
    """prometheus-adapter's rule serves the pipeline gauge under the metric name the HPA asks for."""
    values = yaml.safe_load(ADAPTER_VALUES.read_text())
    hpa_metric = one("HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = {r["name"]["as"]: r for r in values["rules"]["custom"]}
    rule = rules[hpa_metric]
    assert rule["seriesQuery"].startswith(f"{hpa_metric}{{")
    assert re.fullmatch(rule["name"]["matches"], hpa_metric)
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
    assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
    assert re.fullmatch(r"[a-z0-9_]+", hpa_metric)


def test_repository_reports_the_vllm_metrics():
    """The served repository turns on the vLLM backend's metrics (REPORT_CUSTOM_METRICS) the dashboards read."""
    config_pbtxt = render(DeploymentConfig.gpu_default())[f"{LLM_MODEL}/config.pbtxt"]
    assert re.search(r'key: "REPORT_CUSTOM_METRICS" value: \{ string_value: "true" \}', config_pbtxt)


def test_readme_names_the_requirements():
    """deploy/README.md tells about prometheus-adapter, the Secret command and every manifest."""
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "prometheus-adapter" in readme and "custom metrics API" in readme
    assert "kubectl -n llm create secret generic hf-token --from-env-file=.env" in readme
    for path in K8S.glob("*.yaml"):
        assert f"`{path.name}`" in readme, path.name
