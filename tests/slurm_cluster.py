"""A throwaway single-node SLURM for tests: ``slurmctld`` + ``slurmd`` on localhost.

Everything lives in one temporary folder (``slurm.conf``, state, spool, logs, pid files) on
free ports, with ``AuthType=auth/none`` (no munge), ``proctrack/linuxproc`` and ``task/none``
(no cgroups). :func:`local_slurm` always stops both daemons and waits for them.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol", "scancel")
READY_S = 20.0


def slurm_installed() -> bool:
    return all(shutil.which(name) or Path(f"/usr/sbin/{name}").exists() for name in DAEMONS)


@dataclass
class Slurm:
    """A running test cluster; run client commands with :attr:`env`."""

    folder: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def job_state(self, job_id: str) -> tuple[str, str]:
        """``(JobState, Reason)`` of a job (of its first task for an array)."""
        text = self.run("scontrol", "show", "job", "-o", job_id, timeout=10).stdout
        fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
        return fields.get("JobState", "UNKNOWN"), fields.get("Reason", "")

    def wait(self, job_id: str, *, timeout: float) -> str:
        """Poll until the job ends (or can never start); its final state. Bounded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state, reason = self.job_state(job_id)
            if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "UNKNOWN"):
                return state
            if reason == "DependencyNeverSatisfied":
                return f"{state} ({reason})"
            time.sleep(0.2)
        return "TIMEOUT (waiting)"

    def cancel_all(self) -> None:
        """Cancel every job of this cluster and wait (bounded) until none is left."""
        self.run("scancel", "--user", str(os.getuid()), timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-t", "PD,R,CG", timeout=10).stdout.strip():
                return
            time.sleep(0.2)

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.folder / name
            if path.is_file():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-30:]))
        return "\n".join(parts)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _conf(folder: Path, node: str, cpus: int) -> str:
    return f"""ClusterName=medseqtest
SlurmctldHost={socket.gethostname().split(".")[0]}(127.0.0.1)
MailProg=/bin/true
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/none
CredType=cred/none
SlurmUser={getpass.getuser()}
SlurmdUser={getpass.getuser()}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=1
MessageTimeout=10
KillWait=3
MinJobAge=600
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


@contextlib.contextmanager
def local_slurm(*, cpus: int = 4, env: dict[str, str] | None = None) -> Iterator[Slurm]:
    """Start a one-node cluster, yield it once ``sinfo`` shows the node idle, always stop it
    (its jobs cancelled first). ``env``: the environment of the clients, and so of the jobs."""
    folder = Path(tempfile.mkdtemp(prefix="medseq-slurm-"))
    node = "medseqnode"
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(_conf(folder, node, cpus))
    env = {**(env or os.environ), "SLURM_CONF": str(conf)}
    for name in list(env):
        if name.startswith("SLURM_") and name != "SLURM_CONF":
            del env[name]  # a test run inside a real job must not leak its job's variables
    daemons: list[subprocess.Popen[bytes]] = []
    cluster = Slurm(folder, env)
    try:
        for argv in (["slurmctld", "-D", "-i", "-f", str(conf)],
                     ["slurmd", "-D", "-N", node, "-f", str(conf)]):
            daemons.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL,
                                            start_new_session=True))
        deadline = time.monotonic() + READY_S
        while True:
            state = cluster.run("sinfo", "-h", "-N", "-o", "%t", timeout=10).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                break
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                raise RuntimeError(f"slurm did not start (node state {state!r})\n"
                                   + cluster.logs())
            time.sleep(0.2)
        yield cluster
    finally:
        if len(daemons) == 2 and all(d.poll() is None for d in daemons):
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                cluster.cancel_all()
        for daemon in daemons:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGTERM)
        for daemon in daemons:
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
