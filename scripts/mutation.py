"""Mutation testing of the core modules: runs mutmut, then scores the result against the equivalents list.

Usage: python scripts/mutation.py [--resume] [--jobs N] [--fail-under P]

The modules and the tests mutmut uses are configured in pyproject.toml ([tool.mutmut]).
A mutant that survives but cannot change behaviour is listed with a one-line reason in
mutation/equivalent.toml; it is reported as equivalent, not counted against the score.
Ends with the line ``mutation score: K/N killed (P %)``, N excluding the equivalents.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUIVALENTS = REPO / "mutation" / "equivalent.toml"
KILLED = {"killed", "timeout", "segfault", "caught by type check"}
NOT_RUN = {"skipped", "not checked", "check was interrupted by user"}


def mutmut(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mutmut")
    return subprocess.run([str(exe), *args], cwd=REPO, text=True, capture_output=True)


def statuses() -> dict[str, str]:
    """mutant name -> mutmut's status, for every mutant of the last run."""
    result = mutmut("results", "--all", "true")
    if result.returncode != 0:
        raise SystemExit(f"mutmut results failed:\n{result.stdout}\n{result.stderr}")
    out = {}
    for line in result.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            out[name] = status
    return out


def load_equivalents() -> dict[str, str]:
    """mutant name -> the reason it cannot change behaviour."""
    if not EQUIVALENTS.exists():
        return {}
    table = tomllib.loads(EQUIVALENTS.read_text())
    return {name: reason for section in table.values() for name, reason in section.items()}


def module_of(mutant: str) -> str:
    return mutant.split(".x", 1)[0] if ".x" in mutant else mutant.rsplit(".", 1)[0]


def report(found: dict[str, str], equivalents: dict[str, str]) -> tuple[int, int]:
    counted = {name: status for name, status in found.items() if status not in NOT_RUN}
    equivalent = {name for name, status in counted.items() if name in equivalents and status not in KILLED}
    scored = {name: status for name, status in counted.items() if name not in equivalent}
    killed = sum(status in KILLED for status in scored.values())
    survivors = defaultdict(list)
    for name, status in sorted(scored.items()):
        if status not in KILLED:
            survivors[module_of(name)].append(f"{name}: {status}")
    if survivors:
        print(f"surviving mutants ({sum(map(len, survivors.values()))}; `.venv/bin/mutmut show NAME` shows one):")
        for module, names in survivors.items():
            print(f"  {module}")
            for line in names:
                print(f"    {line}")
    if equivalent:
        print(f"equivalent mutants ({len(equivalent)}, from {EQUIVALENTS.relative_to(REPO)}):")
        for name in sorted(equivalent):
            print(f"    {name}: {equivalents[name]}")
    stale = sorted(set(equivalents) - equivalent)
    if stale:
        print(f"listed as equivalent but killed or no longer generated ({len(stale)}; remove them from the list):")
        for name in stale:
            print(f"    {name}: {found.get(name, 'not generated')}")
    skipped = len(found) - len(counted)
    if skipped:
        print(f"not run: {skipped}")
    return killed, len(scored)


def mutmut_environment() -> dict[str, str]:
    """One thread per mutant (the jobs share the cores); tests that start worker processes import
    this checkout's package, whichever one the environment has installed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    return env


def run_mutmut(jobs: int, *mutants: str) -> None:
    exe = str(Path(sys.executable).with_name("mutmut"))
    run = subprocess.run([exe, "run", "--max-children", str(jobs), *mutants], cwd=REPO, env=mutmut_environment())
    if run.returncode != 0:
        raise SystemExit(f"mutmut run failed (exit {run.returncode}); its output is above")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep mutants/ and its results from an earlier run; re-test changed code and the survivors",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fail-under", type=float, default=85.0, help="exit 1 below this score (percent)")
    args = parser.parse_args()
    if not args.resume:
        shutil.rmtree(REPO / "mutants", ignore_errors=True)
    started = time.perf_counter()
    run_mutmut(args.jobs)
    if args.resume:  # mutmut re-tests changed functions only: give the survivors the tests added since
        equivalent = load_equivalents()
        survivors = [
            name for name, status in statuses().items() if status not in KILLED | NOT_RUN and name not in equivalent
        ]
        if survivors:
            run_mutmut(args.jobs, *survivors)
    killed, total = report(statuses(), load_equivalents())
    score = 100.0 * killed / total if total else 0.0
    print(f"mutmut ran for {time.perf_counter() - started:.0f} s with {args.jobs} job(s)")
    print(f"mutation score: {killed}/{total} killed ({score:.1f} %)")
    if score < args.fail_under:
        sys.exit(1)


if __name__ == "__main__":
    main()
