"""kit.server's pure helpers (the server itself is exercised by the integration tests)."""

from __future__ import annotations

import pytest

from kit import server as srv
from kit.config import DeploymentConfig
from kit.repository import render


@pytest.mark.parametrize("config,expected", [
    ('backend: "python"\n', 1),                                                       # no group: one instance
    ("instance_group [ { count: 8 kind: KIND_CPU } ]", 8),
    ("instance_group [ { count: 1 kind: KIND_MODEL } ]", 1),
    ("instance_group [ { count: 2 kind: KIND_CPU }, { kind: KIND_CPU } ]", 3),
    ("instance_group [ { count: 1 kind: KIND_GPU gpus: [ 0, 1 ] } ]", 2),
    ("instance_group [ { count: 1 kind: KIND_GPU } ]", None),                         # one per visible GPU
])
def test_expected_stubs(config, expected):
    assert srv.expected_stubs(config) == expected


def test_expected_stubs_of_the_built_repository(tmp_path):
    """The builder's own configs: one vLLM stub, one per pipeline instance, one postprocess stub."""
    files = render(DeploymentConfig.cpu_default(tmp_path, pipeline_instances=3))
    counts = {path.split("/")[0]: srv.expected_stubs(text) for path, text in files.items()
              if path.endswith("config.pbtxt")}
    assert counts["llama3-8b-instruct"] == 1
    assert counts["llama_bls_ensemble"] == 3
    assert counts["llama_postprocess"] >= 1
