"""A throwaway single-node SLURM cluster on this machine, for tests/test_slurm.py: munged, MariaDB (for
slurmdbd, which ``sacct`` and submitit's job watcher read), slurmdbd, slurmctld and slurmd from Debian's
munge, mariadb-server, slurmdbd and slurm-wlm packages. Every daemon runs in the foreground as a child of
the test process, with its files in one temporary folder and its ports on 127.0.0.1; ``stop()`` ends
them all. Nothing outside this machine is used.

``python -m tests.slurm_cluster`` starts one and waits (Ctrl-C stops it): it prints the SLURM_CONF to
export in another shell, to try sbatch, squeue and sacct by hand."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd")


def find(name: str) -> str | None:
    paths = [Path(folder, name) for folder in ("/usr/sbin", "/usr/bin")]
    return shutil.which(name) or next((str(p) for p in paths if p.is_file()), None)


def missing() -> list[str]:
    """The programs a cluster needs that this machine lacks (.ci/run installs them)."""
    needed = [*DAEMONS, "sbatch", "sacct", "sacctmgr", "scontrol", "sinfo"]
    return [name for name in needed if find(name) is None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    """This machine as slurmd sees it (``slurmd -C``: CPUs, sockets, cores, memory), as a slurm.conf line."""
    out = subprocess.run([find("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("NodeName="))


class SlurmCluster:
    """Start with ``start()``, stop with ``stop()``; ``env`` is the environment clients need (SLURM_CONF)."""

    CLUSTER = "acxtest"
    REQUEUE_DELAY_S = 5

    def __init__(self, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="acxslurm-", dir="/tmp"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # --- helpers -------------------------------------------------------------------------------------
    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def _spawn(self, name: str, args: list[str]) -> None:
        with open(self.root / f"{name}.out", "w") as out:
            self.procs[name] = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.root, start_new_session=True
            )

    def _wait(self, name: str, ready, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while not ready():
            proc = self.procs.get(name)
            if (proc is not None and proc.poll() is not None) or time.time() > deadline:
                out = (self.root / f"{name}.out").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} did not start:\n{out}\n{self.log(name)}")
            time.sleep(0.2)

    def run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A SLURM client command (sinfo, squeue, sacct, scontrol, sacctmgr) against this cluster."""
        proc = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    # --- the daemons ---------------------------------------------------------------------------------
    def start(self) -> SlurmCluster:
        try:
            self._start_munge()
            self._start_mariadb()
            self._write_configs()
            self._start_slurmdbd()
            self._start_slurmctld()
            self._start_slurmd()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        subprocess.run([find("mungekey"), "--create", f"--keyfile={key}"], check=True, capture_output=True)
        key.chmod(0o400)
        self.munge_socket = self.root / "munge.socket"
        self._spawn("munged", [
            find("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={self.munge_socket}",
            f"--pid-file={self.root / 'munged.pid'}", f"--log-file={self.root / 'munged.log'}",
            f"--seed-file={self.root / 'munge.seed'}",
        ])  # fmt: skip
        self._wait("munged", self.munge_socket.exists)

    def _start_mariadb(self) -> None:
        data = self.root / "mysql"
        subprocess.run(
            [find("mariadb-install-db"), "--user=root", f"--datadir={data}", "--auth-root-authentication-method=normal",
             "--skip-test-db", "--skip-name-resolve"],
            check=True, capture_output=True, cwd=self.root,
        )  # fmt: skip
        self.db_port, self.db_socket = free_port(), self.root / "mysql.socket"
        self._spawn("mariadbd", [
            find("mariadbd"), "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={self.db_socket}",
            f"--port={self.db_port}", "--bind-address=127.0.0.1", f"--pid-file={self.root / 'mariadbd.pid'}",
            f"--log-error={self.root / 'mariadbd.log'}", "--skip-grant-tables", "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=0",
            "--skip-log-bin",
        ])  # fmt: skip
        self._wait("mariadbd", self.db_socket.exists)

    def _write_configs(self) -> None:
        r = self.root
        self.dbd_port, self.ctld_port, self.slurmd_port = free_port(), free_port(), free_port()
        for folder in ("state", "spool"):
            (r / folder).mkdir(exist_ok=True)
        # cred_expire: also how long a requeued job waits before it may start again (120 s by default)
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.munge_socket},cred_expire={self.REQUEUE_DELAY_S}\n"
        dbd = r / "slurmdbd.conf"  # slurmdbd reads the one beside SLURM_CONF
        dbd.write_text(
            f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={self.dbd_port}\nSlurmUser=root\n"
            f"PidFile={r / 'slurmdbd.pid'}\nLogFile={r / 'slurmdbd.log'}\nDebugLevel=info\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={self.db_port}\n"
            "StorageUser=root\nStorageLoc=slurm_acct_db\n"
        )
        dbd.chmod(0o600)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(
            f"ClusterName={self.CLUSTER}\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={self.ctld_port}\n"
            f"SlurmdPort={self.slurmd_port}\nSlurmUser=root\nSlurmdUser=root\n{auth}CredType=cred/munge\n"
            f"StateSaveLocation={r / 'state'}\nSlurmdSpoolDir={r / 'spool'}\n"
            f"SlurmctldPidFile={r / 'slurmctld.pid'}\nSlurmdPidFile={r / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={r / 'slurmctld.log'}\nSlurmdLogFile={r / 'slurmd.log'}\n"
            "SlurmctldDebug=info\nSlurmdDebug=info\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
            "MpiDefault=none\nSwitchType=switch/none\nLaunchParameters=use_interactive_step\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={self.dbd_port}\nAccountingStoragePass={self.munge_socket}\n"
            "JobCompType=jobcomp/none\nMailProg=/bin/true\n"
            "SchedulerType=sched/builtin\nSchedulerParameters=sched_interval=2\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
            "ReturnToService=2\nJobRequeue=1\nKillWait=20\nMinJobAge=300\nInactiveLimit=0\n"
            "SlurmctldTimeout=30\nSlurmdTimeout=60\nMessageTimeout=20\n"
            f"{node_line()} NodeAddr=127.0.0.1 State=UNKNOWN\n"
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n"
        )

    def _start_slurmdbd(self) -> None:
        self._spawn("slurmdbd", [find("slurmdbd"), "-D"])
        self._wait("slurmdbd", lambda: "slurmdbd version" in self.log("slurmdbd") and "started" in self.log("slurmdbd"))

    def _start_slurmctld(self) -> None:
        self._spawn("slurmctld", [find("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0)
        # the cluster registers itself; root needs an association for its jobs' records
        self.run("sacctmgr", "-i", "add", "account", "acx", f"cluster={self.CLUSTER}", check=False)
        self.run("sacctmgr", "-i", "add", "user", "root", "account=acx", f"cluster={self.CLUSTER}", check=False)

    def _start_slurmd(self) -> None:
        self._spawn("slurmd", [find("slurmd"), "-D", "-f", str(self.conf)])

        def idle() -> bool:
            state = self.run("sinfo", "-h", "-o", "%T", check=False).stdout.strip()
            return state.startswith("idle")

        self._wait("slurmd", idle, timeout=90)

    def stop(self) -> None:
        """Cancel what is left in the queue and wait for the jobs' processes to end, then end every daemon
        (SIGTERM, then SIGKILL after 15 s), slurmd first, and delete the folder."""
        if self.procs.get("slurmctld") is not None and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--user=root", check=False)
            deadline = time.time() + 30  # a job stays in squeue (COMPLETING) until its slurmstepd have ended
            while self.run("squeue", "-h", check=False).stdout.strip() and time.time() < deadline:
                time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not os.environ.get("ACX_KEEP_SLURM"):
            shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill PID stops it as Ctrl-C does
    cluster = SlurmCluster().start()
    print(f"export SLURM_CONF={cluster.conf}", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
