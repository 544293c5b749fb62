"""What the last apply sent and left, per object: the reason an unchanged object costs no request.

After an apply, the stage remembers for every object it manages two digests: `sent`, of the
desired body as sent (tracking labels, namespace, force and ignore rules included), and `left`, of
the live object as the API answered it, normalised the way every comparison normalises it
(`diff.normalise`: no status, no resourceVersion, no managedFields). The memory travels in the
apply's outputs (`outputs["applied"]`) and comes back as `WorkloadsInputs.memory`, so it lives in
the store with the rest of the environment's recorded outputs: every worker on every machine
plans from the same memory, warm or cold.

An object whose desired digest equals `sent` and whose live digest (from the snapshot) equals
`left` is unchanged without a dry run: the same server-side apply against the same live object
answers the same object. Anything else — a new manifest, an edit by hand, a controller writing a
spec field, an ignore rule changed — is dry-run as before, so normalisation stays the API's.
The live digest ignores status on purpose: resourceVersions move with every status write (a
Deployment's replicas becoming ready), which would dry-run every workload on every sync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from providers.kubernetes.diff import IgnoreRule, normalise
from providers.kubernetes.ordering import ref_of
from providers.stage import digest


@dataclass(frozen=True)
class Remembered:
    """One object's digests: the body the last apply sent and the live object it left."""

    sent: str
    left: str
    version: str = ""
    """The resourceVersion it left: while the live object still has it, it is the very object
    (no need to normalise it to know); a status write moves it, and the digest decides."""


Memory = dict[str, Remembered]
"""By object address (`ObjectRef.address`)."""


def sent_digest(body: Mapping[str, Any], force: bool, rules: Sequence[IgnoreRule]) -> str:
    """Everything the dry run of this object depends on from our side (the ignore rules that match it:
    a rule added for one object leaves the others' memory standing)."""
    ref = ref_of(body)
    return digest({"body": body, "force": force, "rules": [repr(rule) for rule in rules if rule.matches(ref)]})


def live_digest(live: Mapping[str, Any], rules: Sequence[IgnoreRule]) -> str:
    return digest(normalise(live, rules))


def to_json(memory: Mapping[str, Remembered]) -> dict[str, list[str]]:
    return {address: [item.sent, item.left, item.version] for address, item in sorted(memory.items())}


def from_json(data: Any) -> Memory:
    """The recorded form back; anything malformed is forgotten (it only costs dry runs)."""
    if not isinstance(data, Mapping):
        return {}
    out: Memory = {}
    for address, pair in data.items():
        if isinstance(pair, (list, tuple)) and len(pair) in (2, 3) and all(isinstance(v, str) for v in pair):
            out[str(address)] = Remembered(*pair)
    return out
