"""Immediate polls for repositories on this machine: watch their refs instead of waiting for the timer.

A config repo given as a local path or `file://` URL (the demo, a developer's laptop) has no
webhooks, and a poll interval of minutes makes a local commit feel ignored. The watcher follows
the files git rewrites when a ref moves (`refs/`, `packed-refs`, `HEAD`, and `reftable/` where
used) and calls `callback(key)` once per burst of changes, so the caller polls at once. It only
says "look now": what changed is still decided by the ordinary poll.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

log = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.1
MAX_DELAY_SECONDS = 1.0  # a continuous stream of events still fires at least this often
_TOP_LEVEL_REFS = ("HEAD", "packed-refs")


def local_path(url: str) -> Path | None:
    """The directory of a repository given as a local path or `file://` URL; None for remote URLs."""
    if url.startswith("file://"):
        parts = urlsplit(url)
        return Path(unquote(parts.path)) if parts.netloc in ("", "localhost") else None
    if "://" in url:
        return None
    head = url.split("/", 1)[0]
    if ":" in head:  # scp-like `git@host:repo.git`
        return None
    return Path(url)


def git_dir(path: Path) -> Path:
    """The directory holding refs: the repo itself when bare, else its `.git` directory."""
    dot_git = path / ".git"
    if dot_git.is_file():  # a linked worktree or submodule: `gitdir: <path>`
        pointer = dot_git.read_text().strip().removeprefix("gitdir:").strip()
        return (path / pointer).resolve()
    return dot_git if dot_git.is_dir() else path


def _ref_homes(root: Path) -> list[Path]:
    """The git dir, plus the common dir that holds the branches when it is a linked worktree's."""
    common = root / "commondir"
    if not common.is_file():
        return [root]
    return [root, (root / common.read_text().strip()).resolve()]


class _RefEvents(FileSystemEventHandler):
    """Turns file events of one repository into `touch(key)` when they can mean a moved ref."""

    def __init__(self, key: str, root: Path, touch: Callable[[str], None]) -> None:
        self.key = key
        self.root = root
        self.touch = touch

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(self._is_ref(os.fsdecode(path)) for path in paths if path):
            self.touch(self.key)

    def _is_ref(self, path: str) -> bool:
        """A ref file, or a lock renamed onto one; the `.lock` files themselves are not news."""
        if path.endswith(".lock"):
            return False
        relative = Path(path).relative_to(self.root) if Path(path).is_relative_to(self.root) else None
        if relative is None:
            return False
        return relative.parts[0] in ("refs", "reftable") or relative.as_posix() in _TOP_LEVEL_REFS


class LocalRefWatcher:
    """Calls `callback(key)` shortly after the refs of a watched repository change."""

    def __init__(self, callback: Callable[[str], None], *, debounce: float = DEBOUNCE_SECONDS) -> None:
        self.callback = callback
        self.debounce = debounce
        self._observer: BaseObserver = Observer()
        self._watches: dict[str, list[ObservedWatch]] = {}
        self._due: dict[str, tuple[float, float]] = {}  # key -> (fire at, first event)
        self._condition = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    def add(self, key: str, path: Path) -> None:
        """Watch the repository at `path` (bare or not) under `key`; replaces an earlier watch of `key`."""
        self.remove(key)
        watches: list[ObservedWatch] = []
        for root in _ref_homes(git_dir(Path(path)).resolve()):
            handler = _RefEvents(key, root, self._touch)
            watches.append(self._observer.schedule(handler, str(root), recursive=False))
            for name in ("refs", "reftable"):
                if (root / name).is_dir():
                    watches.append(self._observer.schedule(handler, str(root / name), recursive=True))
        self._watches[key] = watches

    def remove(self, key: str) -> None:
        for watch in self._watches.pop(key, []):
            self._observer.unschedule(watch)
        with self._condition:
            self._due.pop(key, None)

    def start(self) -> None:
        self._running = True
        self._observer.start()
        self._thread = threading.Thread(target=self._deliver, name="local-ref-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._running = False
            self._condition.notify_all()
        if self._thread is None:
            return
        self._observer.stop()
        self._observer.join(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalRefWatcher:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def _touch(self, key: str) -> None:
        """Push the key's deadline back by the debounce (trailing edge), capped by MAX_DELAY_SECONDS."""
        now = time.monotonic()
        with self._condition:
            first = self._due.get(key, (0.0, now))[1]
            self._due[key] = (min(now + self.debounce, first + MAX_DELAY_SECONDS), first)
            self._condition.notify_all()

    def _deliver(self) -> None:
        while True:
            with self._condition:
                ready = self._wait_for_due()
                if ready is None:
                    return
            for key in ready:
                try:
                    self.callback(key)
                except Exception:
                    log.exception("ref watch callback failed for %s", key)

    def _wait_for_due(self) -> list[str] | None:
        """Block until some keys are due (returned and cleared), or None once stopped."""
        while self._running:
            now = time.monotonic()
            ready = [key for key, (due, _) in self._due.items() if due <= now]
            if ready:
                for key in ready:
                    del self._due[key]
                return ready
            wait = min((due for due, _ in self._due.values()), default=now + 3600) - now
            self._condition.wait(timeout=max(wait, 0.001))
        return None
