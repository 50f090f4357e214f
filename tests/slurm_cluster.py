"""A real one-node SLURM (Debian's slurm-wlm and munge) for the profile test; see shared/SLURM.md.

``stop`` ends every daemon ``start`` started, and only those: slurmctld and slurmd (each
run with its pid file in this cluster's own state folder), and munged unless one was
already running (then it is left alone, as found). A ``start`` that fails stops what it
had started before it raises.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

MARKER = "# written by ulip2-pipeline's SLURM test"
STOP_TIMEOUT_S = 30
ETC = Path("/etc/slurm")
CONF = (
    MARKER
    + """
ClusterName=ulip2test
SlurmctldHost={node}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmdSpoolDir={state}/slurmd
StateSaveLocation={state}/state
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
GresTypes=gpu
ReturnToService=2
MinJobAge=600
NodeName={node} CPUs={cpus} RealMemory=16000 Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
)


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "the SLURM test needs root to run slurmctld and slurmd"
    missing = [
        tool for tool in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo") if not shutil.which(tool)
    ]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing); .ci/run installs slurm-wlm and munge"
    existing = ETC / "slurm.conf"
    if existing.exists() and MARKER not in existing.read_text():
        return f"{existing} belongs to a real SLURM installation; the test will not replace it"
    return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped by init, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is(pid: int, name: str) -> bool:
    """Whether ``pid`` is a live ``name`` process (not a later process that reused the pid)."""
    try:
        return _alive(pid) and psutil.Process(pid).name() == name
    except psutil.Error:
        return False


class OneNodeSlurm:
    def __init__(self, state: Path):
        # Job steps (srun inside sbatch) read the default location, so the config goes there;
        # the daemons' state and logs stay under ``state``.
        self.state = state
        self.node = socket.gethostname()
        self.conf = ETC / "slurm.conf"
        self.env = dict(os.environ)
        self.started: dict[str, int] = {}  # daemon name -> pid, for the daemons this cluster started

    def _run(self, *cmd, check=True):
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def _pid_file(self, daemon: str) -> Path:
        return self.state / f"{daemon}.pid"

    def _started(self, daemon: str) -> None:
        """Note the pid of a daemon just started (from its pid file, written once it has forked)."""
        self.started[daemon] = -1  # started, pid not known yet: stop() reads the pid file again
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                self.started[daemon] = int(self._pid_file(daemon).read_text().strip())
                return
            except (OSError, ValueError):
                time.sleep(0.1)

    def start(self) -> "OneNodeSlurm":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for sub in ("slurmd", "state"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        ETC.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONF.format(node=self.node, state=self.state, cpus=os.cpu_count() or 2))
        (ETC / "gres.conf").write_text(f"{MARKER}\nNodeName={self.node} Name=gpu File=/dev/null\n")
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            self._run("munged", "--force", f"--pid-file={self._pid_file('munged')}")
            self._started("munged")
        self._run("slurmctld", "-f", str(self.conf))
        self._started("slurmctld")
        self._run("slurmd", "-f", str(self.conf))
        self._started("slurmd")
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self._run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            if state.startswith("idle"):
                return
            if state.startswith(("drain", "inval", "down")):
                self._run("scontrol", "update", f"nodename={self.node}", "state=resume", check=False)
            time.sleep(1)
        raise RuntimeError(f"the SLURM node did not come up: {self.log_tail()}")

    def log_tail(self) -> str:
        logs = [self.state / "slurmctld.log", self.state / "slurmd.log"]
        return "\n".join(p.read_text()[-1500:] for p in logs if p.exists())

    def stop(self) -> None:
        """Cancel the jobs, then end the daemons this cluster started (slurmd, slurmctld, then munged,
        which they authenticate with), waiting for each to exit; remove the configuration it wrote."""
        if "slurmctld" in self.started:
            self._run("scancel", "--user=root", check=False)
        for daemon in ("slurmd", "slurmctld", "munged"):
            if daemon in self.started:
                self._end(daemon)
        for name in ("slurm.conf", "gres.conf"):
            path = ETC / name
            if path.exists() and MARKER in path.read_text():
                path.unlink()

    def _end(self, daemon: str) -> None:
        """SIGTERM, and SIGKILL after STOP_TIMEOUT_S, for a daemon this cluster started; wait until it is gone."""
        pid = self.started.pop(daemon)
        if pid < 0:  # its pid file came late (or never): read it once more
            try:
                pid = int(self._pid_file(daemon).read_text().strip())
            except (OSError, ValueError):
                return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _is(pid, daemon):
                return
            os.kill(pid, sig)
            deadline = time.time() + STOP_TIMEOUT_S
            while time.time() < deadline and _alive(pid):
                time.sleep(0.1)
        if _alive(pid):
            raise RuntimeError(f"{daemon} (pid {pid}) did not exit after SIGKILL")
