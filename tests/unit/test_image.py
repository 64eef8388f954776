"""kit.image: the GPU image's build-time check, with stand-ins for the binary and the backends."""

from __future__ import annotations

import shutil

import pytest

from kit import image
from kit.exceptions import SetupError


def test_check_image(tmp_path, monkeypatch):
    """check-image passes with the modules and backends present, and names numpy<2 and missing pieces otherwise."""
    backends = tmp_path / "backends"
    (backends / "python").mkdir(parents=True)
    (backends / "vllm").mkdir()
    which = lambda name: "/opt/tritonserver/bin/tritonserver"  # noqa: E731
    facts = image.check_image(["better_profanity", "kit.sampling"], which=which, backends_dir=backends, allow_numpy2=False)
    assert any(f.startswith("numpy 1.") for f in facts)

    import numpy

    monkeypatch.setattr(numpy, "__version__", "2.1.0")
    with pytest.raises(SetupError, match="numpy<2"):
        image.check_image(["kit.sampling"], which=which, backends_dir=backends, allow_numpy2=False)
    image.check_image(["kit.sampling"], which=which, backends_dir=backends, allow_numpy2=True)

    shutil.rmtree(backends / "vllm")
    with pytest.raises(SetupError) as err:
        image.check_image(["kit.no_such_module"], which=lambda name: None, backends_dir=backends, allow_numpy2=True)
    message = str(err.value)
    assert "kit.no_such_module" in message and "tritonserver is not on PATH" in message and "'vllm'" in message
