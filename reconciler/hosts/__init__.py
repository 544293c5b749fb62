"""Git host clients (GitHub, GitLab, Gitea): commit statuses, one PR comment, PR authors and reviews.

`client_for` builds the client a registered repository names (`host`, `host_api_url`,
`host_repository`, sealed `host_token`); a repository without a host API gets None, and previews
are then computed and stored without being posted anywhere.
"""

from __future__ import annotations

import httpx

from reconciler.hosts.client import GitHostClient
from reconciler.hosts.gitea import GiteaClient
from reconciler.hosts.github import GitHubClient
from reconciler.hosts.gitlab import GitLabClient
from reconciler.hosts.models import (
    COMMENT_MARKER,
    CommitAccounts,
    CommitStatus,
    HostError,
    HostUser,
    PullRequest,
    Review,
    ReviewState,
)
from store import GitHost, Repository, SecretBox

__all__ = ["COMMENT_MARKER", "CommitAccounts", "CommitStatus", "GitHostClient", "GitHubClient", "GitLabClient",
           "GiteaClient", "HostError", "HostUser", "PullRequest", "Review", "ReviewState", "client_for"]


def client_for(repository: Repository, box: SecretBox,
               transport: httpx.BaseTransport | None = None) -> GitHostClient | None:
    """The repository's host client, or None when it names no host API (generic Git servers)."""
    if repository.host is GitHost.GENERIC or not repository.host_api_url or not repository.host_repository:
        return None
    token = box.unseal_secret(repository.host_token) if repository.host_token is not None else ""
    if repository.host is GitHost.GITHUB:
        return GitHubClient(repository.host_api_url, repository.host_repository, token, transport)
    if repository.host is GitHost.GITLAB:
        return GitLabClient(repository.host_api_url, repository.host_repository, token, transport)
    return GiteaClient(repository.host_api_url, repository.host_repository, token, transport)
