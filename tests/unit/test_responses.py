"""kit.triton_models.responses: the response pump and the cancellation watcher (no server)."""

from __future__ import annotations

import threading
import time

import pytest

from kit.triton_models import responses
from kit.triton_models.responses import CancelWatcher, ResponsePump


class SlowSender:
    """Records sends; each send blocks until the test releases it, like a stub's round trip."""

    def __init__(self):
        self.sent: list[tuple] = []
        self.gate = threading.Semaphore(0)
        self.lock = threading.Lock()

    def __call__(self, key, items, final):
        self.gate.acquire()
        with self.lock:
            self.sent.append((key, list(items), final))


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_items_put_while_a_send_is_in_flight_leave_together_in_order():
    sender = SlowSender()
    pump = ResponsePump(sender, senders=1)
    pump.put("a", 1)
    wait_for(lambda: pump.sends == 1)  # the first item is on its way, the sender blocked
    for item in (2, 3, 4):
        pump.put("a", item)
    pump.put("a", 5, final=True)
    sender.gate.release(2)
    wait_for(lambda: len(sender.sent) == 2)
    assert sender.sent == [("a", [1], False), ("a", [2, 3, 4, 5], True)]
    pump.close()


def test_one_request_is_never_sent_by_two_threads_at_once():
    sender = SlowSender()
    pump = ResponsePump(sender, senders=4)
    pump.put("a", 1)
    wait_for(lambda: pump.sends == 1)
    pump.put("a", 2)
    pump.put("b", 1)
    wait_for(lambda: pump.sends == 2)  # "b" goes to a free thread; "a" waits for its first send
    time.sleep(0.05)
    assert pump.sends == 2
    sender.gate.release(3)
    wait_for(lambda: len(sender.sent) == 3)
    assert [s for s in sender.sent if s[0] == "a"] == [("a", [1], False), ("a", [2], False)]
    pump.close()


def test_items_after_a_pending_final_are_dropped():
    sender = SlowSender()
    pump = ResponsePump(sender, senders=1)
    pump.put("a", 1)
    wait_for(lambda: pump.sends == 1)
    pump.put("a", "end", final=True)
    pump.put("a", "late")  # e.g. a cancellation racing the request's own end
    sender.gate.release(2)
    wait_for(lambda: len(sender.sent) == 2)
    assert sender.sent[1] == ("a", ["end"], True)
    pump.close()


def test_a_failing_send_is_reported_and_the_pump_goes_on():
    errors = []

    def send(key, items, final):
        if key == "bad":
            raise RuntimeError("sender closed")
        done.append(key)

    done: list = []
    pump = ResponsePump(send, senders=1, on_error=lambda key, exc: errors.append((key, str(exc))))
    pump.put("bad", 1, final=True)
    pump.put("good", 1, final=True)
    wait_for(lambda: done == ["good"])
    assert errors == [("bad", "sender closed")]
    assert pump.pending() == 0
    pump.close()


def test_close_sends_what_is_queued():
    sent = []
    pump = ResponsePump(lambda key, items, final: sent.append((key, items, final)), senders=2)
    for i in range(100):
        pump.put(i, i, final=True)
    pump.close()
    assert sorted(k for k, _, _ in sent) == list(range(100))
    assert all(final for _, _, final in sent)


def test_pump_refuses_a_negative_sender_count():
    with pytest.raises(ValueError, match="senders must be"):
        ResponsePump(lambda *a: None, senders=-1)


def test_no_sender_threads_sends_each_item_inline():
    """senders=0 is the behaviour before the pump: every item is its own send, in the caller's thread."""
    sent = []
    pump = ResponsePump(lambda key, items, final: sent.append((key, items, final, threading.get_ident())), senders=0)
    pump.put("a", 1)
    pump.put("a", 2, final=True)
    me = threading.get_ident()
    assert sent == [("a", [1], False, me), ("a", [2], True, me)]
    pump.close()


def test_watcher_reports_each_cancelled_request_once():
    cancelled = []
    flags = {"a": False, "b": True}
    watcher = CancelWatcher(cancelled.append, interval_s=3600)  # passes run by hand below
    watcher.watch("a", lambda: flags["a"])
    watcher.watch("b", lambda: flags["b"])
    assert watcher.check() == ["b"]
    flags["a"] = True
    assert watcher.check() == ["a"]
    assert watcher.check() == []
    assert cancelled == ["b", "a"] and len(watcher) == 0
    watcher.close()


def test_watcher_forgets_finished_requests_and_survives_a_closed_sender():
    """An unwatched request is never asked again; a sender that fails is logged once and dropped."""
    cancelled, logged = [], []
    watcher = CancelWatcher(cancelled.append, interval_s=3600, log=logged.append)
    watcher.watch("done", lambda: True)
    watcher.unwatch("done")

    def closed():
        raise RuntimeError("Response sender has been closed")

    watcher.watch("closed", closed)
    assert watcher.check() == [] and cancelled == []
    assert watcher.check() == [] and len(watcher) == 0
    assert len(logged) == 1 and "closed" in logged[0] and "Response sender has been closed" in logged[0]
    watcher.close()


def test_watcher_logs_a_slow_pass(monkeypatch):
    """A pass slower than SLOW_PASS_S is logged: cancellations then land that much later."""
    monkeypatch.setattr(responses, "SLOW_PASS_S", 0.05)
    logged = []
    watcher = CancelWatcher(lambda key: None, interval_s=0.01, log=logged.append)
    watcher.watch("a", lambda: time.sleep(0.1) or False)
    deadline = time.monotonic() + 5
    while not logged and time.monotonic() < deadline:
        time.sleep(0.01)
    watcher.close()
    assert logged and "cancellation check of 1 requests took" in logged[0]


def test_watcher_thread_polls_on_its_own():
    cancelled = threading.Event()
    watcher = CancelWatcher(lambda key: cancelled.set(), interval_s=0.01)
    watcher.watch("a", lambda: True)
    assert cancelled.wait(5)
    watcher.close()


class _BlockingAsk:
    """An ``is_cancelled`` whose round trip lasts until ``release`` is set."""

    def __init__(self):
        self.asking, self.release, self.calls = threading.Event(), threading.Event(), 0

    def __call__(self) -> bool:
        self.calls += 1
        self.asking.set()
        assert self.release.wait(5)
        return False


def _in_thread(fn, *args) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    return thread


def test_admitting_and_finishing_other_requests_never_waits_for_a_round_trip():
    """watch() runs in the stub's execute (admission): it once waited for the watcher's whole ask."""
    ask = _BlockingAsk()
    watcher = CancelWatcher(lambda key: None, interval_s=3600)
    watcher.watch("slow", ask)
    watcher.watch("other", lambda: False)
    checking = _in_thread(watcher.check)
    assert ask.asking.wait(5)

    def admit_and_finish():
        watcher.watch("new", lambda: False)
        watcher.unwatch("other")

    others = _in_thread(admit_and_finish)
    others.join(5)
    assert not others.is_alive() and not ask.release.is_set()  # done while the ask is still in flight
    ask.release.set()
    checking.join(5)
    assert not checking.is_alive() and len(watcher) == 2  # "slow" and "new"
    watcher.close()


def test_unwatch_waits_for_an_ask_about_its_own_request_then_it_is_never_asked_again():
    ask = _BlockingAsk()
    watcher = CancelWatcher(lambda key: None, interval_s=3600)
    watcher.watch("a", ask)
    checking = _in_thread(watcher.check)
    assert ask.asking.wait(5)
    finishing = _in_thread(watcher.unwatch, "a")
    finishing.join(0.2)
    assert finishing.is_alive()  # the server may not free the request while it is being asked about
    ask.release.set()
    finishing.join(5)
    checking.join(5)
    assert not finishing.is_alive() and not checking.is_alive()
    assert watcher.check() == [] and ask.calls == 1 and len(watcher) == 0
    watcher.close()
