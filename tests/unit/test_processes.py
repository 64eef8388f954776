"""kit.processes: which processes catch a signal, and who is asked for stacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from kit import processes


def test_catches_reads_the_handler_mask():
    """A process catches the stacks signal only once a handler is registered for it."""
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys, time\n"
        "if sys.argv[1] == 'catch':\n"
        "    signal.signal(signal.SIGUSR2, lambda *a: None)\n"
        "print('ready', flush=True); time.sleep(30)"), "catch"], stdout=subprocess.PIPE, text=True)
    plain = subprocess.Popen([sys.executable, "-c", "print('ready', flush=True); import time; time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready" and plain.stdout.readline().strip() == "ready"
        assert processes.catches(child.pid, processes.STACKS_SIGNAL)
        assert not processes.catches(plain.pid, processes.STACKS_SIGNAL)
        assert not processes.catches(plain.pid, signal.SIGUSR1)
    finally:
        for proc in (child, plain):
            proc.kill()
            proc.wait()


def test_catches_a_gone_process_is_false():
    proc = subprocess.Popen(["true"])
    proc.wait()
    time.sleep(0.1)
    assert not processes.catches(proc.pid, processes.STACKS_SIGNAL)


def test_no_stub_is_asked_in_a_session_without_stubs():
    """Processes that are not Triton stubs (here: this test's own session) are never signalled."""
    assert processes.dump_stub_stacks(os.getsid(0)) == []
