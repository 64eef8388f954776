"""kit.repository: the model repository builder."""

import json
import re

import pytest

from kit import repository
from kit.config import DeploymentConfig, GuardConfig
from kit.exceptions import ConfigError


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_committed_repository_is_the_gpu_default_build(tmp_path):
    """model_repository/ is byte-identical to a fresh build of the GPU default config."""
    fresh = repository.build(DeploymentConfig.gpu_default(), tmp_path / "repo", check_gpus=False, check_model=False)
    committed = {k: v for k, v in _files(repository.COMMITTED_REPOSITORY).items() if "__pycache__" not in k}
    assert _files(fresh) == committed


def test_layout_is_what_triton_loads(tmp_path, tiny_model):
    """Every model has config.pbtxt and a version folder with its model.py or model.json."""
    out = repository.build(DeploymentConfig.cpu_default(tiny_model), tmp_path / "repo")
    assert set(_files(out)) == {
        "llama3-8b-instruct/config.pbtxt", "llama3-8b-instruct/1/model.json",
        "llama_postprocess/config.pbtxt", "llama_postprocess/1/model.py",
        "llama_bls_ensemble/config.pbtxt", "llama_bls_ensemble/1/model.py",
        "llama_bls_blocking/config.pbtxt", "llama_bls_blocking/1/model.py",
    }
    model_json = json.loads((out / "llama3-8b-instruct/1/model.json").read_text())
    assert model_json["model"] == str(tiny_model.resolve()) and model_json["dtype"] == "float32"


def test_vllm_model_follows_nvidias_contract():
    """The LLM config says backend vllm, decoupled, KIND_MODEL, with the contract's tensors."""
    text = repository.llm_config(DeploymentConfig.gpu_default())
    assert 'backend: "vllm"' in text and "decoupled: true" in text and "kind: KIND_MODEL" in text
    for name in ("text_input", "stream", "sampling_parameters", "exclude_input_in_output", "text_output"):
        assert f'name: "{name}"' in text


def test_replicas_pin_one_instance_per_gpu():
    """N replicas become KIND_GPU instances on GPUs 0..N-1; tensor parallelism stays KIND_MODEL."""
    text = repository.llm_config(DeploymentConfig.gpu_default(replicas=2))
    assert "kind: KIND_GPU gpus: [ 0, 1 ]" in text
    tp = DeploymentConfig.gpu_default(tensor_parallel_size=2)
    assert "KIND_MODEL" in repository.llm_config(tp) and tp.model_json()["tensor_parallel_size"] == 2


def test_pipeline_parameters_carry_the_guard_settings():
    """Guard words, refusal and BLS mode reach the pipeline's config.pbtxt parameters."""
    guard = GuardConfig(extra_words=("zonk", "blärg"), refusal='No "thanks"', policy="better_profanity",
                        actions={"topic": "count"})
    config = DeploymentConfig.gpu_default(guard=guard, bls_mode="blocking", pipeline_instances=3)
    text = repository.pipeline_config(config, name="p", mode=config.bls_mode, instances=3)
    params = dict(re.findall(r'key: "(\w+)" value: \{ string_value: ("(?:[^"\\]|\\.)*") \}', text))
    assert json.loads(json.loads(params["extra_words"])) == ["zonk", "blärg"]
    assert json.loads(params["refusal"]) == 'No "thanks"'
    assert json.loads(params["policy"]) == "better_profanity"
    assert json.loads(json.loads(params["actions"])) == {"topic": "count"}
    assert json.loads(params["bls_mode"]) == "blocking" and "count: 3" in text


def test_postprocess_batches_dynamically():
    """llama_postprocess has dynamic batching and the two documented outputs."""
    text = repository.postprocess_config(DeploymentConfig.gpu_default())
    assert "dynamic_batching" in text and 'name: "censored_words" data_type: TYPE_INT32' in text


def test_rebuild_removes_models_the_config_no_longer_has(tmp_path, tiny_model):
    """Turning the blocking variant off removes its folder on the next build."""
    out = tmp_path / "repo"
    repository.build(DeploymentConfig.cpu_default(tiny_model), out)
    repository.build(DeploymentConfig.cpu_default(tiny_model, blocking_variant=False), out)
    assert not (out / "llama_bls_blocking").exists()


def test_invalid_config_writes_nothing(tmp_path):
    """An invalid config raises before any file is written."""
    with pytest.raises(ConfigError):
        repository.build(DeploymentConfig.gpu_default(llm_instances=0), tmp_path / "repo", check_gpus=False)
    assert not (tmp_path / "repo").exists()
