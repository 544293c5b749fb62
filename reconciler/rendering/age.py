"""age key pairs for SOPS: made in-process with pyrage, so no `age-keygen` binary is needed.

The identity (`AGE-SECRET-KEY-1…`) decrypts and is a secret; the recipient (`age1…`) is what a
config repo's `.sops.yaml` names in `creation_rules` so that `sops --encrypt` can encrypt for it.
"""

from __future__ import annotations

from pyrage import x25519

from store import redaction


def generate_identity() -> tuple[str, str]:
    """A new X25519 age identity and its recipient: `(secret identity, public recipient)`.

    The identity is registered for redaction at once: whatever Tidegate writes afterwards masks it.
    """
    identity = x25519.Identity.generate()
    secret, recipient = str(identity), str(identity.to_public())
    redaction.remember(secret)
    return secret, recipient
