"""Schedulers: submit, query and cancel jobs, and read each scheduler's output.

One module a scheduler (``local``, ``slurm``, ``pbs``), all behind :class:`Scheduler`. They run their
commands through an executor, so they work the same on the hub host and over SSH, and they
never raise on an unreadable answer: a query that fails is :data:`JobState.UNKNOWN`, not "gone".
"""

from __future__ import annotations

from .base import JobInfo, JobRef, Scheduler, SchedulerError, SubmitError


def get_scheduler(kind: str, *, job_niceness: int = 0) -> Scheduler:
    """The scheduler for a resource's ``scheduler`` setting.

    ``job_niceness`` applies where jobs share a host with others (``local``: the hub's host;
    ``controller``: a login node); a batch scheduler's nodes are the job's own.
    """
    if kind == "local":
        from .local import LocalScheduler

        return LocalScheduler(niceness=job_niceness)
    if kind == "controller":
        from .local import LocalScheduler

        return LocalScheduler.on_login_node(niceness=job_niceness)
    if kind == "slurm":
        from .slurm import SlurmScheduler

        return SlurmScheduler()
    if kind in ("pbs", "torque"):
        from .pbs import PBSScheduler

        return PBSScheduler(flavor="torque" if kind == "torque" else "pro")
    raise ValueError(f"unknown scheduler {kind!r} (known: local, controller, slurm, pbs, torque)")


__all__ = ["JobInfo", "JobRef", "Scheduler", "SchedulerError", "SubmitError", "get_scheduler"]
