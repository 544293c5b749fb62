"""The workloads stage: discovery, ordered server-side apply, one diff, prune by inventory, health, watch.

Modules: `client` (connection and retries), `ordering` (kind order, namespace injection), `diff` (the
one normalised comparison), `inventory`, `health` (kstatus rules), `watch` (live drift), `stage`
(`KubernetesStage`: plan / apply / observe), `schema` (offline validation). Import from the modules;
this package does not import them eagerly (schema validation must stay cheap to import).
"""
