"""kit.params: one YAML dialect (flat keys, YAML 1.2 scalars) and one loader for every parameters mapping."""

from pathlib import Path

import pytest

from kit import container, params
from kit.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_flat_parameters_override_the_preset(tmp_path):
    """Flat notebook parameters pick the preset and override engine args and guard words."""
    config = params.deployment({
        "profile": "gpu", "engine_args": {"max_model_len": 4096}, "extra_words": ["zonk"],
        "bls_mode": "blocking", "unrelated_notebook_parameter": 3,
    })
    assert config.engine_args["max_model_len"] == 4096 and config.engine_args["gpu_memory_utilization"] == 0.85
    assert config.guard.extra_words == ("zonk",) and config.bls_mode == "blocking"


def test_parameter_files_are_checked(tmp_path):
    """A missing, malformed or non-mapping YAML file gets a clear error."""
    with pytest.raises(ConfigError, match="does not exist"):
        params.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        params.load(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        params.load(bad)
    with pytest.raises(ConfigError, match="profile"):
        params.deployment({"profile": "tpu"})


@pytest.mark.parametrize("text, value", [
    ("n: 010", 10), ("n: 0o10", 8), ("n: 0x10", 16), ("n: -3", -3), ("n: 1.10", 1.1), ("n: no", "no"),
    ("n: on", "on"), ("n: true", True), ("n: False", False), ("n: 2024-01-01", "2024-01-01"), ("n: ~", None),
    ("n: null", None), ("n: 1:30", "1:30"), ("n: '010'", "010"), ("n: [1, 02]", [1, 2]),
])
def test_yaml_12_scalars(text, value):
    """Parameters are read with YAML 1.2's scalars: no octal 010, no boolean 'no', no dates."""
    assert params.load_mapping(text, "test")["n"] == value


def test_guard_settings_are_flat_everywhere(tmp_path):
    """A nested 'guard:' is refused with the flat spelling; a flat value from params/cpu.yaml is taken as is."""
    with pytest.raises(ConfigError, match="extra_words: ..."):
        params.load_mapping("guard:\n  extra_words: [zonk]\n", "KIT_PARAMS")
    flat = "extra_words: [zonk]\nblock_input: false\n"
    (tmp_path / "p.yaml").write_text(flat)
    assert params.load(tmp_path / "p.yaml") == container.load_params(flat) == {"extra_words": ["zonk"],
                                                                               "block_input": False}


def test_gpu_yaml_deployment_keys_are_accepted_by_the_container(tmp_path):
    """Every deployment key of params/gpu.yaml (model aside, set by MODEL_ID) is valid in KIT_PARAMS."""
    gpu = params.load(ROOT / "params" / "gpu.yaml")
    deployment_keys = {k: v for k, v in gpu.items() if k in params.DEPLOYMENT_KEYS and k != "model"}
    config = container.deployment_config(tmp_path, {**deployment_keys, "extra_words": ["zonk"]})
    assert config.guard.extra_words == ("zonk",) and config.pipeline_instances == gpu["pipeline_instances"]


def test_strict_deployment_names_the_unknown_key():
    """strict=True refuses a key that is no deployment setting and lists the known ones."""
    with pytest.raises(ConfigError, match=r"unknown deployment setting\(s\) \['first_prompt'\].*extra_words"):
        params.deployment({"first_prompt": "hi"}, strict=True)
    assert params.deployment({"first_prompt": "hi"}).model  # notebooks' keys are ignored when not strict
