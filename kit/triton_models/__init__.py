"""Triton Python models of the kit (imported only inside Triton's Python stub).

The ``model.py`` files in a model repository are thin shims over these
modules. Importing this package switches the embedded interpreter to UTF-8:
Triton's stub starts it with the C locale, under which importing torch/vLLM
fails with ``UnicodeDecodeError: 'ascii' codec``. It also lets every stub write its Python
threads' stacks to the server log on :data:`kit.processes.STACKS_SIGNAL` (``kill -USR2 <pid>``).
"""

import faulthandler
import locale
import sys

from kit.processes import STACKS_SIGNAL

try:
    locale.setlocale(locale.LC_ALL, "C.UTF-8")
except locale.Error:  # pragma: no cover - every glibc system has C.UTF-8
    pass

if sys.stderr is not None:  # the stub's stderr is the server's log
    faulthandler.register(STACKS_SIGNAL, file=sys.stderr, all_threads=True)
