"""Under mutmut, a mutant's test session costs little: its cheapest tests run first, and the heap it
inherits is frozen.

A mutant's run stops at the first failure, so a killed mutant then costs its cheapest killing test,
not a model load. mutmut's own ordering (fork mode only) uses each test's call time, which leaves out fixtures; here the
stats run (MUTANT_UNDER_TEST=stats) records setup, call and teardown per test, and a test's cost
includes the costliest set-up seen in its module (a module-scoped fixture is paid by whichever test of
the module runs first). Tests stay grouped by module, so a module's fixtures are set up once.
"""

from __future__ import annotations

import gc
import json
import os
from collections import defaultdict
from pathlib import Path

COSTS = Path("mutmut-test-costs.json")  # in mutants/, where mutmut runs the tests
_phases: dict[str, dict[str, float]] = defaultdict(dict)


def _mutant_session() -> bool:
    """A test session of one mutant (not mutmut's stats, clean, forced-fail or listing runs)."""
    mutant = os.environ.get("MUTANT_UNDER_TEST")
    return bool(mutant) and mutant not in ("stats", "fail", "list_all_tests", "mutant_generation")


def freeze_inherited_heap(config) -> None:
    """Each mutant's session is a fork of mutmut's fork server, which imported torch and every test
    module after mutmut froze its own heap. Unfrozen, that heap is walked by every garbage collection,
    and pytest collects garbage at the end of a session: about 1.5 s of each mutant's 2 s (measured)."""
    if _mutant_session():
        gc.freeze()


def _stats_run() -> bool:
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def record_cost(report) -> None:
    if _stats_run():
        _phases[report.nodeid][report.when] = report.duration


def save_costs(session, exitstatus) -> None:
    if _stats_run() and _phases:
        COSTS.write_text(json.dumps(_phases))


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def costs_per_test(phases: dict[str, dict[str, float]]) -> dict[str, float]:
    """Seconds per test: its own phases plus its module's costliest set-up."""
    module_setup: dict[str, float] = defaultdict(float)
    for nodeid, by_phase in phases.items():
        module_setup[_module(nodeid)] = max(module_setup[_module(nodeid)], by_phase.get("setup", 0.0))
    return {nodeid: sum(by_phase.values()) + module_setup[_module(nodeid)] for nodeid, by_phase in phases.items()}


def cheapest_first(items) -> None:
    """Reorder ``items`` in place when a mutant is under test and the stats run left its costs."""
    if not _mutant_session() or not COSTS.exists():
        return
    cost = costs_per_test(json.loads(COSTS.read_text()))
    unknown = max(cost.values(), default=0.0) + 1.0
    item_cost = {item.nodeid: cost.get(item.nodeid, unknown) for item in items}
    module_cost: dict[str, float] = {}
    for item in items:
        module = _module(item.nodeid)
        module_cost[module] = min(module_cost.get(module, unknown), item_cost[item.nodeid])
    items.sort(key=lambda item: (module_cost[_module(item.nodeid)], _module(item.nodeid), item_cost[item.nodeid]))
