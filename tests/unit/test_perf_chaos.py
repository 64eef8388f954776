"""kit.perf.chaos.tally: which failed requests the killed stub or a fault explains, and which are failures."""

from __future__ import annotations

from kit.perf.chaos import Outcome, SoakReport, tally


def _report(**times) -> SoakReport:
    return SoakReport(duration_s=300, killed_at_s=10.0, restored_at_s=110.0, **times)


def test_the_kill_and_a_fault_explain_their_requests_and_nothing_else():
    """Requests in flight at the kill are lost with the stub; those ended up to detection_s before a
    fault's restart, or during it, are lost with the fault; any other error is a failure."""
    planned = (9.98, 109.0, {"llama_bls_ensemble": "1 of its 2 stubs died"})  # the kill's 10.0 s is rounded
    fault = (200.0, 290.0, {"server": "not answering: 2 one-token requests in a row failed"})
    outcomes = [
        Outcome("stream", 5.0, 12.0, False, "stub died"),          # in flight at the kill
        Outcome("generate", 20.0, 25.0, True),
        Outcome("cancel", 140.0, 165.0, False, "request cancelled"),  # 35 s before the fault's restart
        Outcome("stream", 180.0, 285.0, False, "connection lost"),  # ended by the restart
        Outcome("stream", 120.0, 130.0, False, "request cancelled"),  # long before: a failure
        Outcome("generate", 295.0, 296.0, False, "empty answer"),  # after service came back: a failure
    ]
    report = tally(_report(), outcomes, t0=0.0, restarts=[planned, fault], detection_s=50.0, hang_s=100.0)
    assert (report.requests, report.ok, report.lost_with_stub, report.lost_with_fault) == (6, 1, 1, 2)
    assert report.failures == ["stream at 120.0s: request cancelled", "generate at 295.0s: empty answer"]
    assert report.faults == ["200.0s: server: not answering: 2 one-token requests in a row failed"]
    assert report.hung == 1  # 105 s ≥ hang_s, lost with the fault or not
    assert report.by_kind == {"stream": 3, "generate": 2, "cancel": 1}


def test_without_faults_every_unexplained_error_is_a_failure():
    planned = (11.0, 109.0, {"llama_bls_ensemble": "1 of its 2 stubs died"})
    outcomes = [Outcome("cancel", 150.0, 151.0, False, "request cancelled")]
    report = tally(_report(), outcomes, t0=0.0, restarts=[planned], detection_s=50.0, hang_s=100.0)
    assert report.faults == [] and report.lost_with_fault == 0
    assert report.failures == ["cancel at 150.0s: request cancelled"]
    assert "faults none (0 requests lost with them)" in report.summary()
