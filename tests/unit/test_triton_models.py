"""kit.triton_models (the package): what importing it does to a Triton stub's interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

from kit.paths import project_root


def test_importing_the_package_makes_ascii_stdio_write_utf8():
    """A stub's stdio is ASCII (C locale); after the import an em dash is written as UTF-8, and a
    process forked afterwards (as vLLM forks its engine core) inherits the UTF-8 streams."""
    code = (
        "import os, sys\n"
        "assert sys.stdout.encoding == 'ascii', sys.stdout.encoding\n"
        "import kit.triton_models\n"
        "print('parent \\u2014', flush=True)\n"
        "if os.fork() == 0:\n"
        "    print('engine core \\u2014', file=sys.stderr, flush=True)\n"
        "    os._exit(0)\n"
        "os.wait()\n"
    )
    env = dict(os.environ, PYTHONIOENCODING="ascii", PYTHONPATH=str(project_root()))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert done.stdout.decode("utf-8") == "parent \u2014\n"
    assert "engine core \u2014" in done.stderr.decode("utf-8")
    assert b"UnicodeEncodeError" not in done.stderr
