"""The GPU image's entrypoint (kit/container.py), driven offline: no hub, no GPU, no Triton."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from localhttp import QuietHandler, serving

import kit.config
from kit import container
from kit.config import CPU_ENGINE_ARGS, GPU_ENGINE_ARGS, DeploymentConfig
from kit.exceptions import EXIT_CODE, ConfigError, KitError, SetupError
from kit.repository import COMMITTED_REPOSITORY, render
from kit.weights import LLAMA3_REPO_ID

CANARY = "hf_CANARYcanaryCANARYcanary0123456789"
ROOT = Path(__file__).resolve().parents[2]
TOKEN_ENV = ("HUGGINGFACE_HUB_TOKEN", "HF_TOKEN")
SETTINGS_ENV = ("MODEL_ID", "MODELS_DIR", "MODEL_REPOSITORY", "KIT_PARAMS", "TRITON_EXTRA_ARGS", "TRITON_LOG_VERBOSE")


@pytest.fixture(autouse=True)
def _offline_engine_args(monkeypatch):
    """Validate engine arguments against the kit's fallback list instead of importing vLLM (seconds)."""
    names = frozenset(GPU_ENGINE_ARGS) | frozenset(CPU_ENGINE_ARGS) | kit.config._COMMON_ENGINE_ARGS
    monkeypatch.setattr(kit.config, "engine_argument_names", lambda: names)
    for name in (*TOKEN_ENV, *SETTINGS_ENV):
        monkeypatch.delenv(name, raising=False)


def write_model(folder: Path) -> Path:
    """A folder that passes kit.weights.is_complete: config, tokenizer and (fake) weights."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "model-00001-of-00001.safetensors").write_bytes(b"\0" * 64)
    return folder


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def settings(tmp_path: Path, **changes) -> container.Settings:
    values = dict(models_dir=tmp_path / "models", repository=tmp_path / "repo")
    values.update(changes)
    return container.Settings(**values)


def no_download(*args, **kwargs):
    raise AssertionError("the model was downloaded although it was present")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """Replace huggingface_hub.snapshot_download (used by kit.weights.download_model) with a local copy."""
    source = write_model(tmp_path / "hub-source")
    calls = []

    def snapshot_download(repo_id, *, local_dir, token=None, allow_patterns=None, **kwargs):
        calls.append({"repo_id": repo_id, "local_dir": Path(local_dir), "token": token, "allow_patterns": allow_patterns})
        shutil.copytree(source, local_dir, dirs_exist_ok=True)
        return str(local_dir)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


# --------------------------------------------------------------------------- settings


def test_settings_defaults():
    """An empty environment gives Llama-3-8B-Instruct, /models and /tmp/model_repository."""
    s = container.settings_from_env({})
    assert s.model_id == LLAMA3_REPO_ID
    assert s.models_dir == Path("/models")
    assert s.repository == Path("/tmp/model_repository")
    assert (s.params, s.token, s.extra_args, s.log_verbose) == ({}, None, (), 0)


def test_settings_read_every_variable(tmp_path):
    """Every documented variable is read, HUGGINGFACE_HUB_TOKEN winning over HF_TOKEN."""
    s = container.settings_from_env({
        "MODEL_ID": "owner/some-model",
        "MODELS_DIR": str(tmp_path / "m"),
        "MODEL_REPOSITORY": str(tmp_path / "r"),
        "KIT_PARAMS": "pipeline_instances: 3",
        "HF_TOKEN": "second",
        "HUGGINGFACE_HUB_TOKEN": " first ",
        "TRITON_EXTRA_ARGS": "--log-info=true --exit-timeout-secs='45'",
        "TRITON_LOG_VERBOSE": "2",
    })
    assert s.model_id == "owner/some-model"
    assert (s.models_dir, s.repository) == (tmp_path / "m", tmp_path / "r")
    assert s.params == {"pipeline_instances": 3}
    assert s.token == "first"
    assert s.extra_args == ("--log-info=true", "--exit-timeout-secs=45")
    assert s.log_verbose == 2
    assert container.settings_from_env({"HF_TOKEN": "only"}).token == "only"


@pytest.mark.parametrize("env, fragment", [
    ({"MODEL_ID": "not-a-hub-id"}, "MODEL_ID"),
    ({"MODEL_ID": "relative/path/model"}, "MODEL_ID"),
    ({"TRITON_LOG_VERBOSE": "loud"}, "TRITON_LOG_VERBOSE"),
    ({"TRITON_EXTRA_ARGS": "--x='unclosed"}, "TRITON_EXTRA_ARGS"),
])
def test_settings_reject_bad_values(env, fragment):
    """A malformed variable raises ConfigError naming the variable."""
    with pytest.raises(ConfigError, match=fragment):
        container.settings_from_env(env)


def test_settings_repr_hides_token():
    """The token never shows in the settings' repr (tracebacks, debug prints)."""
    s = container.settings_from_env({"HUGGINGFACE_HUB_TOKEN": CANARY})
    assert s.token == CANARY
    assert CANARY not in repr(s) and CANARY not in str(s)


def test_kit_params_inline_and_file(tmp_path):
    """KIT_PARAMS accepts inline YAML and the path of a YAML file."""
    assert container.load_params("{engine_args: {max_model_len: 4096}}") == {"engine_args": {"max_model_len": 4096}}
    path = tmp_path / "params.yaml"
    path.write_text("extra_words: [frobnicate]\npipeline_instances: 2\n")
    assert container.load_params(str(path)) == {"extra_words": ["frobnicate"], "pipeline_instances": 2}
    assert container.load_params("") == {} and container.load_params(None) == {}


@pytest.mark.parametrize("value, fragment", [
    ("engine_args: [unclosed", "not valid YAML"),
    ("- a\n- list\n", "mapping"),
    ("model: /elsewhere", "MODEL_ID"),
    ("guard: {extra_words: [x]}", "flat"),
    ("/no/such/params.yaml", "does not exist"),
])
def test_kit_params_errors(value, fragment):
    """Bad KIT_PARAMS raise ConfigError with the fix in the message."""
    with pytest.raises(ConfigError, match=fragment):
        container.load_params(value)


# --------------------------------------------------------------------------- deployment config


def test_config_without_params_is_the_gpu_default(tmp_path):
    """Without KIT_PARAMS the container serves exactly DeploymentConfig.gpu_default(model=<folder>)."""
    folder = write_model(tmp_path / "m")
    assert container.deployment_config(folder) == DeploymentConfig.gpu_default(model=str(folder))


def test_config_params_merge_engine_args_and_guard(tmp_path):
    """engine_args from KIT_PARAMS is merged into the GPU defaults; the guard's flat keys and other fields replace them."""
    folder = write_model(tmp_path / "m")
    config = container.deployment_config(folder, {
        "engine_args": {"max_model_len": 4096},
        "extra_words": ["frobnicate"],
        "pipeline_instances": 2,
    })
    assert config.engine_args == {**GPU_ENGINE_ARGS, "max_model_len": 4096}
    assert config.guard.extra_words == ("frobnicate",)
    assert config.guard.block_input is True
    assert config.pipeline_instances == 2
    assert config.model == str(folder)


def test_config_rejects_unknown_field(tmp_path):
    """A typo in KIT_PARAMS fails with DeploymentConfig's list of known settings."""
    with pytest.raises(ConfigError, match="unknown deployment setting"):
        container.deployment_config(tmp_path, {"pipline_instances": 2})


# --------------------------------------------------------------------------- the model


def test_present_model_is_not_downloaded(tmp_path):
    """A complete model in <MODELS_DIR>/<name> is used as is: no token needed, no download."""
    folder = write_model(tmp_path / "models" / "Meta-Llama-3-8B-Instruct")
    messages = []
    assert container.resolve_model(settings(tmp_path), download=no_download, progress=messages.append) == folder
    assert any("no download" in m for m in messages)


def test_hub_cache_layout_is_used(tmp_path):
    """A Hugging Face cache (models--owner--name/snapshots/<rev>, blobs as symlinks) mounted as /models is used."""
    repo = tmp_path / "models" / "hub" / "models--meta-llama--Meta-Llama-3-8B-Instruct"
    blobs = write_model(repo / "blobs-src")
    (repo / "blobs").mkdir()
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for i, f in enumerate(sorted(blobs.iterdir())):
        blob = repo / "blobs" / f"sha{i}"
        f.rename(blob)
        (snapshot / f.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    stale = repo / "snapshots" / "old"
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    found = container.resolve_model(settings(tmp_path), download=no_download, progress=lambda m: None)
    assert found == snapshot
    assert container.find_cached_snapshot(tmp_path / "models", "other/model") is None


def test_explicit_model_folder(tmp_path):
    """MODEL_ID may be an absolute folder; an incomplete one is refused with the reason."""
    folder = write_model(tmp_path / "mine")
    assert container.resolve_model(settings(tmp_path, model_id=str(folder)), download=no_download, progress=print) == folder
    (folder / "tokenizer.json").unlink()
    with pytest.raises(SetupError, match="lacks config.json, a tokenizer"):
        container.resolve_model(settings(tmp_path, model_id=str(folder)), download=no_download)


def test_missing_token_names_env_file_and_variable(tmp_path):
    """No model and no token: the error gives the exact .env line to add."""
    with pytest.raises(SetupError) as err:
        container.resolve_model(settings(tmp_path), download=no_download)
    message = str(err.value)
    assert ".env" in message
    assert "HUGGINGFACE_HUB_TOKEN=<your Hugging Face token>" in message
    assert str(tmp_path / "models" / "Meta-Llama-3-8B-Instruct") in message


def test_download_when_missing_then_reuse(tmp_path, fake_hub):
    """A missing model is fetched with the token into <MODELS_DIR>/<name>; the next start reuses it."""
    s = settings(tmp_path, token=CANARY)
    folder = container.resolve_model(s, progress=lambda m: None)
    assert folder == tmp_path / "models" / "Meta-Llama-3-8B-Instruct"
    assert (folder / "config.json").is_file()
    assert len(fake_hub) == 1
    call = fake_hub[0]
    assert call["repo_id"] == LLAMA3_REPO_ID and call["token"] == CANARY and call["local_dir"] == folder
    assert "*.safetensors" in call["allow_patterns"]
    container.resolve_model(s, progress=lambda m: None)
    assert len(fake_hub) == 1


def test_unwritable_models_dir(tmp_path, monkeypatch):
    """A models volume the container user cannot write is reported with the chown fix before downloading."""
    (tmp_path / "models").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "models" else real_access(p, mode))
    with pytest.raises(SetupError, match="chown"):
        container.resolve_model(settings(tmp_path, token=CANARY), download=no_download)


# --------------------------------------------------------------------------- repository and command line


def test_container_repository_equals_render(tmp_path):
    """The container writes exactly kit.repository.render(gpu_default(model=<folder>)): one source of truth."""
    folder = write_model(tmp_path / "models" / "Meta-Llama-3-8B-Instruct")
    config, repository = container.prepare(settings(tmp_path), download=no_download, progress=lambda m: None)
    assert config == DeploymentConfig.gpu_default(model=str(folder))
    assert tree(repository) == render(DeploymentConfig.gpu_default(model=str(folder)))
    model_json = json.loads((repository / "llama3-8b-instruct" / "1" / "model.json").read_text())
    assert model_json["model"] == str(folder)


def test_container_layout_matches_committed_repository(tmp_path):
    """Up to the model path, the container's repository is the committed model_repository/ (hub id → local folder)."""
    folder = write_model(tmp_path / "models" / "Meta-Llama-3-8B-Instruct")
    _, repository = container.prepare(settings(tmp_path), download=no_download, progress=lambda m: None)
    ours = {rel: text.replace(str(folder), LLAMA3_REPO_ID) for rel, text in tree(repository).items()}
    assert ours == render(DeploymentConfig.gpu_default())
    committed = tree(COMMITTED_REPOSITORY) if COMMITTED_REPOSITORY.is_dir() else {}
    if not committed:
        pytest.skip("model_repository/ has not been generated in this checkout")
    assert ours == committed


def test_tritonserver_command_line(tmp_path):
    """Ports 8000/8001/8002, the repository, Python-backend shm sizes, verbosity and extra flags."""
    s = settings(tmp_path, extra_args=("--exit-timeout-secs=45",), log_verbose=1)
    cmd = container.tritonserver_command(s, tmp_path / "repo", binary="/opt/tritonserver/bin/tritonserver")
    assert cmd[0] == "/opt/tritonserver/bin/tritonserver"
    assert f"--model-repository={tmp_path / 'repo'}" in cmd
    assert {"--http-port=8000", "--grpc-port=8001", "--metrics-port=8002"} <= set(cmd)
    assert "--backend-config=python,shm-default-byte-size=33554432" in cmd
    assert "--backend-config=python,shm-growth-byte-size=16777216" in cmd
    assert "--log-verbose=1" in cmd
    assert cmd[-1] == "--exit-timeout-secs=45"
    assert (container.HTTP_PORT, container.GRPC_PORT, container.METRICS_PORT) == (8000, 8001, 8002)


def test_server_environment_drops_token():
    """tritonserver runs without the hub token in its environment."""
    env = container.server_environment({"HUGGINGFACE_HUB_TOKEN": CANARY, "HF_TOKEN": CANARY, "PATH": "/usr/bin"})
    assert CANARY not in env.values()
    assert env["PATH"] == "/usr/bin" and env["PYTHONUNBUFFERED"] == "1"


def test_serve_execs_tritonserver(tmp_path):
    """serve() builds the repository, then execs tritonserver with the command line and the scrubbed env."""
    write_model(tmp_path / "models" / "Meta-Llama-3-8B-Instruct")
    execs = []
    container.serve(
        settings(tmp_path),
        download=no_download,
        which=lambda name: f"/opt/tritonserver/bin/{name}",
        execvpe=lambda file, args, env: execs.append((file, args, env)),
        progress=lambda m: None,
    )
    (file, args, env), = execs
    assert file == args[0] == "/opt/tritonserver/bin/tritonserver"
    assert f"--model-repository={tmp_path / 'repo'}" in args
    assert (tmp_path / "repo" / "llama_bls_ensemble" / "config.pbtxt").is_file()
    assert not set(TOKEN_ENV) & set(env)


def test_serve_without_tritonserver(tmp_path):
    """Outside NVIDIA's image the entrypoint says where it belongs instead of failing obscurely."""
    with pytest.raises(SetupError, match="docker/Dockerfile"):
        container.serve(settings(tmp_path), which=lambda name: None, download=no_download)


# --------------------------------------------------------------------------- the token never leaks


def test_canary_token_never_leaks(tmp_path, monkeypatch, capfd, fake_hub):
    """Through download, build and exec, the token appears in no output, command, server env or repository file."""
    monkeypatch.setenv("HUGGINGFACE_HUB_TOKEN", CANARY)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MODEL_REPOSITORY", str(tmp_path / "repo"))
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/tritonserver/bin/{name}")
    execs = []
    monkeypatch.setattr(os, "execvpe", lambda file, args, env: execs.append((file, args, env)))
    assert container.main(["serve"]) == 0
    assert fake_hub[0]["token"] == CANARY  # the token did reach the hub client
    (file, args, env), = execs
    out, err = capfd.readouterr()
    assert "downloading" in out or "downloading" in err
    assert CANARY not in out + err
    assert all(CANARY not in a for a in args)
    assert CANARY not in "".join(env.values())
    for path in (tmp_path / "repo").rglob("*"):
        if path.is_file():
            assert CANARY not in path.read_text()


def test_canary_token_not_in_failed_download(tmp_path, monkeypatch, capfd):
    """A hub error that echoes the token is reported without it (stderr and exit code 2)."""
    import huggingface_hub

    def failing(repo_id, **kwargs):
        raise OSError(f"401 Unauthorized for token {kwargs['token']}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    assert container.main(["download"]) == EXIT_CODE
    out, err = capfd.readouterr()
    assert "error:" in err and "401" in err
    assert CANARY not in out + err
    with pytest.raises(KitError) as exc:
        container.resolve_model(settings(tmp_path, token=CANARY), progress=lambda m: None)
    assert CANARY not in str(exc.value) and CANARY not in repr(exc.value)


def test_main_missing_token_exit_code(tmp_path, monkeypatch, capfd):
    """`python -m kit.container` without model or token exits 2 with the .env instruction, no traceback."""
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    assert container.main(["download"]) == EXIT_CODE
    err = capfd.readouterr().err
    assert "HUGGINGFACE_HUB_TOKEN=" in err and ".env" in err and "Traceback" not in err


def test_main_command_prints_command_line(tmp_path, monkeypatch, capsys):
    """`command` builds the repository and prints the exact tritonserver invocation."""
    write_model(tmp_path / "models" / "Meta-Llama-3-8B-Instruct")
    monkeypatch.setenv("MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MODEL_REPOSITORY", str(tmp_path / "repo"))
    assert container.main(["command"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("tritonserver --model-repository=") and "--grpc-port=8001" in last


# --------------------------------------------------------------------------- health and image checks


class _Handler(QuietHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v2/health/ready" else 503)
        self.end_headers()


@pytest.fixture
def http_server():
    with serving(_Handler) as url:
        yield url


def test_healthcheck(http_server):
    """healthcheck exits 0 on HTTP 200, 1 on any other status or no server."""
    assert container.healthcheck(f"{http_server}/v2/health/ready") == 0
    assert container.healthcheck(f"{http_server}/v2/health/other") == 1
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert container.healthcheck(f"http://127.0.0.1:{closed}/v2/health/ready", timeout=1) == 1


def test_module_runs_as_entrypoint(http_server):
    """`python -m kit.container healthcheck URL` (the image's HEALTHCHECK) works as a real process."""
    ok = subprocess.run([sys.executable, "-m", "kit.container", "healthcheck", f"{http_server}/v2/health/ready"],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "healthy" in ok.stdout


class _IndexHandler(_Handler):
    def do_POST(self):
        body = json.dumps([{"name": "pipe", "version": "1", "state": "READY"}]).encode()
        self.send_response(200 if self.path == "/v2/repository/index" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_healthcheck_fails_while_a_model_lacks_a_stub(tmp_path, capsys):
    """Ready but one of two pipeline stubs gone: the check fails and names the model; with both stubs it passes."""
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "config.pbtxt").write_text("instance_group [ { count: 2 kind: KIND_CPU } ]")
    stub = f"/b/triton_python_backend_stub {tmp_path}/pipe/1/model.py shm 1 1 1 /b"
    with serving(_IndexHandler) as base:
        url = f"{base}/v2/health/ready"
        assert container.healthcheck(url, repository=tmp_path, stubs=lambda: [stub]) == 1
        assert "pipe: 1 of its 2 Python stub processes died" in capsys.readouterr().out
        assert container.healthcheck(url, repository=tmp_path, stubs=lambda: [stub, stub]) == 0


def test_healthcheck_live_flag_asks_the_live_endpoint():
    """`healthcheck --live` (the liveness probe) parses; the URL defaults differ for ready and live."""
    args = container._parser().parse_args(["healthcheck", "--live"])
    assert args.live and args.url is None
    assert container.LIVE_URL.endswith("/v2/health/live") and container.READY_URL.endswith("/v2/health/ready")
