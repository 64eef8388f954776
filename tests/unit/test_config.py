"""kit.config: deployment settings, validated before anything is written."""

import dataclasses

import pytest

from kit.config import DeploymentConfig, GuardConfig, detect_gpus
from kit.exceptions import ConfigError


def test_gpu_default_targets_llama3_on_the_hub():
    """The GPU preset serves Llama-3-8B-Instruct by hub id with CUDA graphs on."""
    config = DeploymentConfig.gpu_default()
    assert config.model == "meta-llama/Meta-Llama-3-8B-Instruct" and not config.model_is_local
    assert config.model_json()["enforce_eager"] is False


def test_cpu_default_points_at_the_tiny_model(tmp_path):
    """The CPU preset serves a local folder with CPU engine settings and the blocking variant."""
    config = DeploymentConfig.cpu_default(tmp_path)
    assert config.model == str(tmp_path.resolve()) and config.model_is_local
    assert config.device == "cpu" and config.blocking_variant


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"llm_instances": 0}, "llm_instances"),
        ({"pipeline_instances": -1}, "pipeline_instances"),
        ({"bls_mode": "fast"}, "bls_mode"),
        ({"device": "tpu"}, "device"),
        ({"engine_args": {"not_an_arg": 1}}, "unknown vLLM engine argument"),
        ({"engine_args": {"model": "x"}}, "deployment setting"),
        ({"model": "/nonexistent/model"}, "config.json"),
        ({"replicas": 2, "tensor_parallel_size": 2}, "either replicas"),
        ({"guard": GuardConfig(extra_words=("",))}, "non-empty"),
        ({"guard": GuardConfig(refusal=" ")}, "refusal"),
        ({"guard": GuardConfig(policy="strict")}, "set policy to one of"),
        ({"guard": GuardConfig(actions={"swearing": "block"})}, "unknown category 'swearing': use one of"),
        ({"guard": GuardConfig(actions={"insult": "hide"})}, "action 'hide' for category 'insult' is unknown"),
        ({"guard": GuardConfig(actions=["insult"])}, "mapping of category: action"),
    ],
)
def test_invalid_configs_are_explained(changes, message):
    """Each invalid setting raises a ConfigError that names it."""
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(DeploymentConfig.gpu_default(), **changes).validate(check_gpus=False)


def test_more_gpus_than_visible_is_refused():
    """Asking for more GPUs than the machine shows is a clear error before anything is written."""
    config = DeploymentConfig.gpu_default(tensor_parallel_size=4)
    with pytest.raises(ConfigError, match="needs 4 GPUs but 2 are visible"):
        config.validate(visible_gpus=2)
    config.validate(visible_gpus=4)


def test_detect_gpus_honours_cuda_visible_devices(monkeypatch):
    """CUDA_VISIBLE_DEVICES decides how many GPUs count as visible."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,3")
    assert detect_gpus() == 3


def test_round_trip_through_a_dict():
    """to_dict/from_dict keep every setting, guard included."""
    config = DeploymentConfig.gpu_default(guard=GuardConfig(extra_words=("zonk",)), replicas=2)
    assert DeploymentConfig.from_dict(config.to_dict()) == config


def test_unknown_settings_in_a_dict_are_refused():
    """A typo in a parameters file is an error, not silently ignored."""
    with pytest.raises(ConfigError, match="unknown deployment setting"):
        DeploymentConfig.from_dict({"modle": "x"})
    with pytest.raises(ConfigError, match="unknown guard setting"):
        DeploymentConfig.from_dict({"guard": {"extra": []}})
