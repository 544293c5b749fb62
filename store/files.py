"""The data directory is the service user's alone: 0700, even when it existed before Tidegate ran.

It holds the SQLite store, `secret.key`, checkouts of config repos, run artifacts and the embedded
Redis's socket. `mkdir(mode=0o700, exist_ok=True)` leaves an existing directory's mode alone (a
directory made by `mkdir -p`, an image or a volume mount is usually 0755), so the mode is set here
on every start as well.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def private_directory(path: Path) -> Path:
    """Create `path` (and parents) if needed and make it 0700; warn when it belongs to someone else."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if stat.S_IMODE(path.stat().st_mode) != 0o700:
            path.chmod(0o700)
    except PermissionError:
        log.warning("cannot make %s private (mode 0700): not its owner", path)
    return path
