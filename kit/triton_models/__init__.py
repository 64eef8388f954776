"""Triton Python models of the kit (imported only inside Triton's Python stub).

The ``model.py`` files in a model repository are thin shims over these
modules. Importing this package switches the embedded interpreter to UTF-8:
Triton's stub starts it with the C locale, under which importing torch/vLLM
fails with ``UnicodeDecodeError: 'ascii' codec``, and with ASCII ``sys.stdout`` and
``sys.stderr`` although the server's environment sets ``PYTHONIOENCODING``; vLLM's engine
process inherits those streams when it forks, and on the H200 its log lines with an em dash
raised ``UnicodeEncodeError`` logging errors into the server log. It also lets every stub
write its Python threads' stacks to the server log on :data:`kit.processes.STACKS_SIGNAL`
(``kill -USR2 <pid>``).
"""

import faulthandler
import locale
import sys

from kit.processes import STACKS_SIGNAL


def utf8_stdio() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` write UTF-8 (unencodable text is escaped, never raised).

    The CLI's :func:`kit.cli.tolerant_stdio` keeps the terminal's encoding; a stub writes to the
    server log, a file, so it takes UTF-8."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")


try:
    locale.setlocale(locale.LC_ALL, "C.UTF-8")
except locale.Error:  # pragma: no cover - every glibc system has C.UTF-8
    pass
utf8_stdio()

if sys.stderr is not None:  # the stub's stderr is the server's log
    faulthandler.register(STACKS_SIGNAL, file=sys.stderr, all_threads=True)
