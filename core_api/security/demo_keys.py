"""Demo secrets kept in the state directory: outside production, a key setting left unset gets a random key that
every local process shares (``flightdesk up`` and the commands started beside it).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["DemoKeyError", "demo_key"]

logger = logging.getLogger(__name__)


class DemoKeyError(Exception):
    """The demo key file exists but stayed empty (its creator died before writing it)."""


def demo_key(path: Path, generate: Callable[[], str], *, setting: str) -> str:
    """The key in ``path``, created once with ``generate()`` (mode 0600, race-free: ``O_EXCL``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the creator may not have written it yet
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)
        raise DemoKeyError(f"{path} is empty") from None
    key = generate()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    logger.warning("generated a demo key in %s; set %s in production", path, setting)
    return key
