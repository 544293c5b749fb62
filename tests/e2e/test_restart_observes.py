"""A restart must not claim a world it has not looked at.

Tidegate restarted on an existing data directory whose clusters came back empty (the sandbox's
emulators start empty; on a real installation: a cluster rebuilt behind Tidegate's back). Once the
new workers are up, no status reads `Synced Healthy` for an environment whose objects are gone:
each becomes `Drifted` with health `Missing`, then staging (selfHeal) heals itself, production
(gated, no selfHeal) waits for a person. The order of states is asserted, not a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import select

from providers.kubernetes.client import KubeClient
from providers.kubernetes.inventory import from_json
from providers.kubernetes.ordering import sort_for_prune
from providers.stage import Stage
from reconciler import observations
from reconciler.session import recorded_outputs
from store import Environment, Role, RoleBinding, User
from tests.support.git_server import git
from tests.support.system import Bootstrap, System, _stop, wait_for
from tidegate.client import LocalClient

ENVIRONMENTS = ("staging", "production")
HEALED = ("Synced", "Healthy")
GONE = ("Drifted", "Missing")
OPERATOR = "restart-operator"


def _empty_cluster(system: System, environment: str) -> int:
    """Delete every object Tidegate applied to the environment's cluster, dependents first (not the
    namespaces: a namespace still terminating when the heal recreates its objects is another story)."""
    with system.services.database.session() as session:
        env = session.scalars(select(Environment).where(Environment.name == environment)).one()
        inventory = from_json(recorded_outputs(system.services, session, env.id)[Stage.WORKLOADS]["inventory"])
    kube = system.sandbox.kube[environment]
    config = kube.write_kubeconfig(system.data / f"kubeconfig-empty-{environment}")
    client = KubeClient.connect(path=config)
    refs = sort_for_prune([ref for refs in inventory.values() for ref in refs if ref.kind != "Namespace"])
    try:
        for ref in refs:
            client.delete(ref.api_version, ref.kind, ref.name, ref.namespace or None)
    finally:
        client.close()
    return len(refs)


def _mend_the_head(system: System) -> None:
    """An earlier test leaves an invalid head (staging OutOfSync): commit staging's file as its
    synced revision has it, so staging is Synced again (nothing else changes, so fingerprints
    leave every stage out)."""
    good = system.view("staging").revision
    assert good is not None
    text = git("show", f"{good}:environments/staging.yaml", cwd=system.bare)
    head = system.commit({"environments/staging.yaml": text}, "mend staging after the invalid revision")
    system.poll()
    # production reads nothing the commits since its sync touched: it stays at its revision
    wait_for(lambda: system.view("staging").revision == head, 600, "staging synced at the mended head", system)


def _state_is(system: System, name: str, wanted: tuple[str, str]) -> Callable[[], bool]:
    return lambda: (system.view(name).sync_status, system.view(name).health) == wanted


def _operator(system: System) -> LocalClient:
    with system.services.database.session() as session:
        if session.scalars(select(User).where(User.name == OPERATOR)).one_or_none() is None:
            session.add_all([User(name=OPERATOR), RoleBinding(subject=f"user:{OPERATOR}", role=Role.OPERATOR)])
    return LocalClient(system.services, login=OPERATOR)


@contextmanager
def _states(system: System) -> Iterator[dict[str, list[tuple[str, str]]]]:
    """Every distinct (sync status, health) each environment's status shows, in order, read as
    `tidegate status` reads it, until the block ends."""
    seen: dict[str, list[tuple[str, str]]] = {name: [] for name in ENVIRONMENTS}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for view in system.client.status():
                if view.name in seen and (not seen[view.name] or seen[view.name][-1] != (view.sync_status,
                                                                                         view.health)):
                    seen[view.name].append((view.sync_status, view.health))
            stop.wait(0.2)

    reader = threading.Thread(target=watch, name="status-reader", daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        stop.set()
        reader.join(timeout=10)


def test_a_restart_on_emptied_clusters_shows_drifted_missing_then_heals_staging(
        system: System, bootstrapped: Bootstrap) -> None:
    _mend_the_head(system)
    for name in ENVIRONMENTS:  # the shared system settles after earlier tests (a new leader looks first)
        wait_for(_state_is(system, name, HEALED), 600, f"{name} Synced and Healthy before the restart", system)
    _stop(system.workers)  # Tidegate stops ...
    system.workers.clear()
    for name in ENVIRONMENTS:
        assert _empty_cluster(system, name) > 0  # ... and its clusters come back empty
    with system.services.database.session() as session:
        observations.request(session)  # what `tidegate up` does before it starts the workers
    with _states(system) as states:
        system.spawn_worker()
        system.spawn_worker()
        wait_for(lambda: GONE in states["production"], 300, "production Drifted and Missing", system, interval=0.2)
        wait_for(lambda: GONE in states["staging"] and states["staging"][-1] == HEALED, 600,
                 "staging Drifted and Missing, then healed", system, interval=0.2)
    for name in ENVIRONMENTS:
        before_gone = states[name][:states[name].index(GONE)]
        assert HEALED not in before_gone, f"{name} claimed Synced Healthy before looking: {states[name]}"
    assert system.view("production").health == "Missing"
    # production waits for a person: an operator heals it through its gate (the platform lead
    # approves), so the shared system is whole again
    report = next(r for r in system.client.drift("production") if r.status == "open")
    heal = _operator(system).heal_drift(report.id)
    wait_for(lambda: next((s for s in system.syncs("production") if s.id == heal
                           and s.status == "awaiting_approval"), None), 300, "production's heal plan", system)
    system.client.approve(heal, "restore after the restart test")
    wait_for(lambda: (system.view("production").sync_status, system.view("production").health) == HEALED, 600,
             "production healed after approval", system)
