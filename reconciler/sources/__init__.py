"""Git sources: what a registered config repo holds, at which revision, and what changed.

Public API:

* `GitSource(url, cache_dir, branch="main", auth=None)`: `remote_head()`, `fetch()`, `refresh()`,
  `commit(sha)`, `changed_paths(old, new)`, `is_ancestor(old, new)`, `checkout(sha, root)`
* `prune_checkouts(root, keep)`, `GitAuth`, `CommitInfo`
* errors: `SourceError` > `SourceUnreachable` (> `AuthenticationFailed`), `BranchMissing`, `UnknownRevision`
* `LocalRefWatcher`, `local_path(url)`: immediate polls for repositories on this machine
* `paths_read(repo, environment)`, `reads_changed(repo, environment, changed)`, `affected(repo, changed)`
"""

from reconciler.sources.git import (
    AuthenticationFailed,
    BranchMissing,
    CommitInfo,
    GitAuth,
    GitSource,
    SourceError,
    SourceUnreachable,
    UnknownRevision,
    prune_checkouts,
    safe_url,
)
from reconciler.sources.paths import affected, paths_read, reads_changed
from reconciler.sources.watch import LocalRefWatcher, local_path

__all__ = [
    "AuthenticationFailed",
    "BranchMissing",
    "CommitInfo",
    "GitAuth",
    "GitSource",
    "LocalRefWatcher",
    "SourceError",
    "SourceUnreachable",
    "UnknownRevision",
    "affected",
    "local_path",
    "paths_read",
    "prune_checkouts",
    "reads_changed",
    "safe_url",
]
