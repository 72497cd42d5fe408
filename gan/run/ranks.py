"""Which process of a run this is, read from what the launchers put in the environment, before
Lightning sets up (no torch here: train.py's folder guard and --help import it)."""

from __future__ import annotations

import os

STARTED_BY = "GAN_STARTED_BY"  # the PID of the train.py process that starts its run's other processes


def process_rank() -> int:
    """This process's global rank (0 when not distributed): RANK (torchrun), SLURM_PROCID (srun),
    or LOCAL_RANK for the processes Lightning starts on one node."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def start_others_tied() -> None:
    """In rank zero, before Lightning's launcher starts the other processes of a run on this
    machine (`trainer.devices=N`): they inherit this, and know the process they must die with."""
    os.environ[STARTED_BY] = str(os.getpid())


def die_with_starter() -> None:
    """In a process Lightning's launcher started: die with rank zero, however it ends (killed,
    it would leave this one waiting in a collective). Processes that torchrun, srun or a shell
    started are theirs to end, and are left alone."""
    if os.environ.get(STARTED_BY) == str(os.getppid()):
        from gan.processes import die_with_parent

        die_with_parent(os.getppid())


def slurm_job() -> str | None:
    """This SLURM job's id (`<array job>_<task>` for an array task), or None outside SLURM."""
    if "SLURM_ARRAY_JOB_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def requeued_into(folder) -> bool:
    """Whether this is a requeued SLURM job (SLURM_RESTART_COUNT > 0) and `folder` holds its own
    earlier run (its status.json names this job): the run continues there, from its checkpoint."""
    from gan.run.status import DamagedStatus, read_status  # torch-free

    job = slurm_job()
    if job is None or int(os.environ.get("SLURM_RESTART_COUNT", "0")) == 0:
        return False
    try:
        return read_status(folder).get("slurm_job") == job
    except DamagedStatus:  # not a folder this job can tell as its own
        return False
