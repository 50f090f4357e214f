"""A real one-node SLURM (Debian's slurm-wlm and munge) for the profile test; see shared/SLURM.md."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MARKER = "# written by ulip2-pipeline's SLURM test"
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


class OneNodeSlurm:
    def __init__(self, state: Path):
        # Job steps (srun inside sbatch) read the default location, so the config goes there;
        # the daemons' state and logs stay under ``state``.
        self.state = state
        self.node = socket.gethostname()
        self.conf = ETC / "slurm.conf"
        self.env = dict(os.environ)

    def _run(self, *cmd, check=True):
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=check, timeout=60)

    def start(self) -> "OneNodeSlurm":
        for sub in ("slurmd", "state"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        ETC.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONF.format(node=self.node, state=self.state, cpus=os.cpu_count() or 2))
        (ETC / "gres.conf").write_text(f"{MARKER}\nNodeName={self.node} Name=gpu File=/dev/null\n")
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            self._run("munged", "--force")
        self._run("slurmctld", "-f", str(self.conf))
        self._run("slurmd", "-f", str(self.conf))
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self._run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            if state.startswith("idle"):
                return self
            if state.startswith(("drain", "inval", "down")):
                self._run("scontrol", "update", f"nodename={self.node}", "state=resume", check=False)
            time.sleep(1)
        raise RuntimeError(f"the SLURM node did not come up: {self.log_tail()}")

    def log_tail(self) -> str:
        logs = [self.state / "slurmctld.log", self.state / "slurmd.log"]
        return "\n".join(p.read_text()[-1500:] for p in logs if p.exists())

    def stop(self) -> None:
        self._run("scancel", "--user=root", check=False)
        for name in ("slurmd.pid", "slurmctld.pid"):
            pid_file = self.state / name
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
        time.sleep(1)
        for name in ("slurm.conf", "gres.conf"):
            path = ETC / name
            if path.exists() and MARKER in path.read_text():
                path.unlink()
