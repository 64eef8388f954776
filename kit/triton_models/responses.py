"""Sending a decoupled model's responses off the thread that produces them.

Why: in Triton's Python backend ``response_sender.send()`` is a blocking round trip from the
stub to the server process (the message goes through shared memory and the caller waits until
the server took it). The GIL is released while it waits, but the *calling thread* is stuck. In
the vLLM backend that thread is the asyncio loop that also runs vLLM's output handler: on an
H200 at 256 streams it spent 58 % of its time in ``send``, the engine core waited for input 59 %
of the time, and output fell to a third of vLLM's own rate.

:class:`ResponsePump` takes the sends elsewhere. The producer only appends an item to its
request's pending list (a lock and a list append); a few sender threads send. While a request's
previous response is still on its way, its new items pile up and leave together as *one*
response: under light load every token goes out at once (nothing is added to the inter-token
latency), under heavy load responses coalesce by themselves, so the number of round trips per
second is bounded by the senders' speed, not by the token rate.

:class:`CancelWatcher` asks every in-flight request whether its client cancelled, from one
thread of its own every :data:`CANCEL_CHECK_S`, so that a request that yields nothing for a long
time (a non-streaming generation) is cancelled as promptly as a stream, and no producer pays a
round trip per token to ask.

Both are plain Python with injected callbacks (no ``triton_python_backend_utils``), so they are
unit-tested without a server.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Any, Callable, Hashable

CANCEL_CHECK_S = 0.25
"""How often the watcher asks about each in-flight request (each ask is a round trip to the server)."""
SLOW_PASS_S = 2.0  # a watcher pass slower than this is logged

SendFn = Callable[[Hashable, list, bool], None]


class ResponsePump:
    """Per-request FIFO of items, sent by ``senders`` threads with ``send(key, items, final)``.

    * Items of one request are sent in the order they were put, never by two threads at once.
    * ``items`` holds everything put since that request's previous send (at least one item).
    * ``final`` is true for the last send of a request. Items put after a final item, before its
      send, are dropped; a ``send`` callback must itself ignore keys it has already finished.
    * An exception raised by ``send`` goes to ``on_error(key, exc)`` and the pump goes on.
    * ``senders=0`` sends inline, in the thread that puts, one item per send (no coalescing): the
      behaviour before the pump, kept for side-by-side benchmarks (``benchmarks/response_pump.py``).
    """

    def __init__(self, send: SendFn, *, senders: int = 2, name: str = "responses",
                 on_error: Callable[[Hashable, BaseException], None] | None = None):
        if senders < 0:
            raise ValueError(f"senders must be ≥ 0, got {senders}")
        self._inline = senders == 0
        self._send = send
        self._on_error = on_error or (lambda key, exc: None)
        self._pending: dict[Hashable, list] = {}
        self._final: set[Hashable] = set()
        self._busy: set[Hashable] = set()
        self._ready: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.sends = 0
        self.items = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(senders)
        ]
        for thread in self._threads:
            thread.start()

    def put(self, key: Hashable, item: Any, final: bool = False) -> None:
        """Queue ``item`` for request ``key``; ``final`` marks the request's last item."""
        if self._inline:
            self.sends += 1
            self.items += 1
            try:
                self._send(key, [item], final)
            except BaseException as exc:  # noqa: BLE001
                self._on_error(key, exc)
            return
        with self._cond:
            if key in self._final:
                return
            pending = self._pending.get(key)
            if pending is None:
                self._pending[key] = [item]
                if key not in self._busy:
                    self._ready.append(key)
                    self._cond.notify()
            else:
                pending.append(item)
            if final:
                self._final.add(key)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stopping:
                    self._cond.wait()
                if not self._ready:
                    return
                key = self._ready.popleft()
                items = self._pending.pop(key)
                final = key in self._final
                self._final.discard(key)
                self._busy.add(key)
                self.sends += 1
                self.items += len(items)
            try:
                self._send(key, items, final)
            except BaseException as exc:  # noqa: BLE001 - one failed send must not stop the pump
                self._on_error(key, exc)
            with self._cond:
                self._busy.discard(key)
                if key in self._pending:  # more arrived while this send was in flight
                    self._ready.append(key)
                    self._cond.notify()

    def pending(self) -> int:
        """Requests with items not yet sent, or a send in flight."""
        with self._cond:
            return len(self._pending.keys() | self._busy)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop the sender threads (waits at most ``timeout`` s each)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout)


class CancelWatcher:
    """Calls ``on_cancel(key)`` once for each watched request whose ``is_cancelled()`` turns true.

    ``is_cancelled`` is the response sender's method (a round trip to the server); it is called
    from the watcher's thread only, every :data:`CANCEL_CHECK_S` per request, and never for a key
    after :meth:`unwatch` returned: the server frees a request's state once its final response is
    sent, so a request must be unwatched *before* its final send (asking about a finished request
    crashed tritonserver with SIGSEGV at 64 streams on an H200). :meth:`unwatch` waits only while
    that very key is being asked about (at most one round trip); :meth:`watch` never waits for a
    round trip. (It did once: with one lock held across every ask, admitting a request on an H200
    at 256 streams waited ~1 ms for the watcher's pass, 58 % of ``execute``, and requests queued
    in Triton for 65 ms on average.)
    """

    def __init__(self, on_cancel: Callable[[Hashable], None], *, interval_s: float = CANCEL_CHECK_S,
                 name: str = "cancel-watch", log: Callable[[str], None] | None = None):
        self._on_cancel = on_cancel
        self._interval = interval_s
        self._log = log or (lambda message: None)  # e.g. the stub's warning log
        self._watched: dict[Hashable, Callable[[], bool]] = {}
        self._cond = threading.Condition()  # guards _watched and _asking; held only for dict work
        self._asking: Hashable | None = None  # the key whose is_cancelled() is in flight
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def watch(self, key: Hashable, is_cancelled: Callable[[], bool]) -> None:
        with self._cond:
            self._watched[key] = is_cancelled

    def unwatch(self, key: Hashable) -> None:
        """Stop watching ``key``; once this returns, ``is_cancelled`` of ``key`` is not called again."""
        with self._cond:
            self._watched.pop(key, None)
            while self._asking == key:
                self._cond.wait()

    def __len__(self) -> int:
        return len(self._watched)

    def check(self) -> list[Hashable]:
        """One pass over the watched requests; returns (and stops watching) the cancelled ones."""
        with self._cond:
            keys = list(self._watched)
        cancelled = []
        for key in keys:
            with self._cond:
                is_cancelled = self._watched.get(key)
                if is_cancelled is None:
                    continue  # finished meanwhile
                self._asking = key  # from here until the answer, unwatch(key) waits
            hit, failure = False, None
            try:
                hit = bool(is_cancelled())
            except Exception as exc:  # noqa: BLE001 - a sender already closed: nothing left to cancel
                failure = exc
            finally:
                with self._cond:
                    self._asking = None
                    if hit or failure is not None:
                        self._watched.pop(key, None)
                    self._cond.notify_all()
            if failure is not None:
                self._log(f"cannot ask whether request {key} was cancelled, no longer watching it: {failure}")
            elif hit:
                cancelled.append(key)
                self._on_cancel(key)
        return cancelled

    def _run(self) -> None:
        last_slow_log = -math.inf
        while not self._stop.wait(self._interval):
            started, watched = time.monotonic(), len(self._watched)
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - keep watching
                self._log(f"cancellation watcher: {exc!r}")
            took = time.monotonic() - started
            if took > SLOW_PASS_S and started - last_slow_log > 60:  # at most one line a minute
                last_slow_log = started  # cancellations land this much later than CANCEL_CHECK_S promises
                self._log(f"cancellation check of {watched} requests took {took:.1f}s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
