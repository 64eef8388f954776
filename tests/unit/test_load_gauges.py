"""kit.triton_models.load_gauges with a stand-in for Triton's metric API (the real one: tests/integration)."""

from __future__ import annotations

import sys
import types

import pytest

from kit.triton_models import load_gauges


class _Metric:
    def __init__(self, labels):
        self.labels = labels
        self.value = None

    def set(self, value):
        self.value = value


class _Family:
    GAUGE = "gauge"
    made = []

    def __init__(self, name, description, kind):
        self.name, self.kind = name, kind

    def Metric(self, labels):  # noqa: N802 - Triton's naming
        metric = _Metric(labels)
        _Family.made.append((self.name, metric))
        return metric


@pytest.fixture
def gauges(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.SimpleNamespace(MetricFamily=_Family))
    _Family.made.clear()
    made = load_gauges.LoadGauges("pipe", "pipe_0_1")
    yield made
    made.close()


def _values():
    return {name: metric.value for name, metric in _Family.made}


def test_one_series_per_instance(gauges):
    """Each gauge is labelled with its model and instance, so two instances never overwrite each other."""
    assert {name for name, _ in _Family.made} == {n for n, _ in load_gauges.NAMES.values()}
    assert all(m.labels == {"model": "pipe", "instance": "pipe_0_1"} for _, m in _Family.made)


def test_requests_move_the_gauges(gauges):
    """start() counts a request in flight and waiting; first_token() ends the wait; done() ends both."""
    a, b = gauges.start(), gauges.start()
    gauges.flush()
    assert _values() == {"kit_pipeline_requests_in_flight": 2, "kit_pipeline_waiting_first_token": 2}
    a.first_token()
    a.first_token()  # a second token changes nothing
    gauges.flush()
    assert _values() == {"kit_pipeline_requests_in_flight": 2, "kit_pipeline_waiting_first_token": 1}
    a.done()
    b.done()  # refused before any token: it stops waiting too
    gauges.flush()
    assert _values() == {"kit_pipeline_requests_in_flight": 0, "kit_pipeline_waiting_first_token": 0}
