"""Where the kit keeps things: the project root and its per-checkout state folder."""

from __future__ import annotations

import os
import time
from pathlib import Path

STATE_FILE = "server.json"


def project_root() -> Path:
    """The repository root (the folder that holds ``kit/``)."""
    return Path(__file__).resolve().parent.parent


def kit_dir() -> Path:
    """Per-checkout state (detached server record, prepared server copy, logs); ``KIT_STATE_DIR`` overrides it."""
    return Path(os.environ.get("KIT_STATE_DIR", project_root() / ".kit"))


def new_log(kind: str) -> Path:
    """A fresh log file's path, ``<kit_dir>/logs/<kind>-<YYYYmmdd-HHMMSS>-<pid>.log`` (the folder is not created)."""
    return kit_dir() / "logs" / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def state_path() -> Path:
    """The detached server's record (``python -m kit serve --detach``)."""
    return kit_dir() / STATE_FILE
