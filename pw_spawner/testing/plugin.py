"""pytest plugin: fixtures that put a fake scheduler (Slurm, PBS, Grid Engine, LSF...) on ``PATH``.

Registered as the ``pw_spawner`` pytest11 entry point. Each fixture makes a bin directory of
wrapper scripts (``sbatch``, ``squeue``, ... or ``qsub``, ``qstat``, ...) that run
:mod:`pw_spawner.testing.fake`, plus a state directory, and points ``PATH`` and
``PW_FAKE_SCHED_DIR`` at them for the test::

    def test_submit(fake_slurm):
        out = subprocess.run(["sbatch", "--parsable"], input=script, text=True,
                             capture_output=True, check=True).stdout
        job = fake_slurm.wait_for_state(out.strip(), "RUNNING")

There is one fixture ``fake_<flavour>`` per flavour the fake's scheduler modules declare
(``fake_slurm``, ``fake_pbs``, ``fake_torque``, ``fake_sge``, ``fake_lsf``...). Jobs really run on
this machine; whatever is still running when the test ends is killed (SIGTERM, then SIGKILL after
two seconds). Knobs such as
``PW_FAKE_PENDING_SECONDS`` (see the docstrings of :mod:`pw_spawner.testing.fake`'s modules) are set
with :meth:`FakeScheduler.set_knobs`, or with ``monkeypatch.setenv`` for commands the test runs
itself. Outside pytest, :func:`install_fake_scheduler` makes the same bin directory.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .fake import cli as fake_cli
from .fake import processes as fake_processes
from .fake import store as fake_store

#: The wrappers each flavour gets, as the fake's scheduler modules declare them.
FLAVORS: dict[str, tuple[str, ...]] = {name: flavor.commands for name, flavor in fake_cli.flavors().items()}
#: Every knob the fake reads; a developer's shell might have set them: every fixture starts without.
KNOBS: tuple[str, ...] = fake_cli.knobs()


def install_fake_scheduler(dest_dir: str | os.PathLike[str], flavor: str,
                           state_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Write the fake ``flavor`` commands (a key of :data:`FLAVORS`: slurm, pbs, torque...) into
    ``dest_dir``.

    The state directory defaults to ``dest_dir/state``. Returns the environment variables to
    set (``PATH`` with ``dest_dir`` first, ``PW_FAKE_SCHED_DIR`` and the flavour's settings, e.g.
    ``PW_FAKE_PBS_FLAVOR``); the wrappers also fall back to these settings on their own, so they
    still work when a caller passes them a trimmed environment.
    """
    flavors = fake_cli.flavors()
    chosen = flavors.get(flavor.lower())
    if chosen is None:
        raise ValueError(f"unknown scheduler flavor {flavor!r} ({', '.join(flavors)})")
    bin_dir = Path(dest_dir).absolute()
    state = Path(state_dir).absolute() if state_dir is not None else bin_dir / "state"
    bin_dir.mkdir(parents=True, exist_ok=True)
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings = {"PW_FAKE_SCHED_DIR": str(state), **chosen.settings}
    defaults = [f': "${{{key}:={shlex.quote(value)}}}"; export {key}' for key, value in settings.items()]
    python = shlex.quote(sys.executable)
    entry = shlex.quote(fake_processes.ENTRY)
    for name in chosen.commands:
        # The entry is run by its path, not with -m: a caller that strips PYTHONPATH from the
        # environment (the spawner does) must still reach it. It imports only the stdlib.
        text = "\n".join([
            "#!/bin/sh",
            f"# Fake {name} ({flavor.lower()}), written by pw_spawner.testing.plugin.",
            *defaults,
            f"exec {python} {entry} {chosen.scheduler} {name} \"$@\"",
            "",
        ])
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}", **settings}


@dataclass
class FakeScheduler:
    """What the ``fake_slurm``/``fake_pbs``/``fake_torque`` fixtures yield.

    Job records are the fake's own JSON: ``id`` (int), ``name``, ``state`` (PENDING, RUNNING,
    COMPLETED, FAILED, CANCELLED, TIMEOUT), ``exit_code``, ``pid`` (the job's process group),
    ``stdout``/``stderr`` (where the job writes), ``partition`` (the queue for PBS) and more.
    """

    flavor: str
    bin_dir: Path
    state_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> fake_store.JobStore:
        return fake_store.JobStore(self.state_dir)

    def set_knobs(self, **knobs: str | int | float) -> None:
        """Set knobs (``PW_FAKE_PENDING_SECONDS=600``) for every later fake command of this test.

        They go to the state directory's knobs file, not to the environment: the spawner hands
        its commands an allow-listed environment, and test hooks have no place in that list.
        """
        unknown = set(knobs) - set(KNOBS)
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)} (known: {', '.join(KNOBS)})")
        path = self.state_dir / fake_store.KNOBS_FILE
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update({name: str(value) for name, value in knobs.items()})
        path.write_text(json.dumps(current))

    def jobs(self) -> list[dict[str, Any]]:
        """Every job record, in id order."""
        return self.store.jobs()

    def job(self, job_id: int | str) -> dict[str, Any] | None:
        """One record; ``job_id`` may be ``1000`` or ``"1000.fakepbs"``."""
        return self.store.load(int(str(job_id).split(".", 1)[0]))

    def wait_for_state(self, job_id: int | str, *states: str,
                       timeout: float = 10.0) -> dict[str, Any]:
        """Poll until the job is in one of ``states``; fails the test on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job is not None and job["state"] in states:
                return job
            if time.monotonic() > deadline:
                seen = job["state"] if job else "no such job"
                pytest.fail(f"job {job_id} not in {states} after {timeout}s (it is {seen})")
            time.sleep(0.05)

    def kill_all(self, grace: float = 2.0) -> None:
        """Cancel every unfinished job and kill its processes: SIGTERM, SIGKILL after ``grace``."""
        store = self.store
        groups = []
        with store.locked():
            for job in store.jobs():
                if job.get("pid") and job.get("exit_code") is None:
                    groups.append(job["pid"])  # running, or cancelled and still dying
                if job["state"] in fake_store.ACTIVE_STATES:
                    # Marked first, under the lock, so a pending job's supervisor never starts it.
                    job.update(state="CANCELLED", end_time=time.time())
                    store.save(job)
        for pgid in groups:
            fake_processes.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(fake_processes.pgid_alive(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pgid in groups:
            if fake_processes.pgid_alive(pgid):
                fake_processes.killpg(pgid, signal.SIGKILL)


def _fake_scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    flavor: str) -> Iterator[FakeScheduler]:
    root = tmp_path / f"fake-{flavor}"
    env = install_fake_scheduler(root / "bin", flavor, state_dir=root / "state")
    for knob in KNOBS:
        monkeypatch.delenv(knob, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sched = FakeScheduler(flavor, root / "bin", root / "state", env)
    try:
        yield sched
    finally:
        sched.kill_all()


def _fixture(flavor: str) -> Callable[..., Iterator[FakeScheduler]]:
    def fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeScheduler]:
        yield from _fake_scheduler(tmp_path, monkeypatch, flavor)

    fixture.__name__ = f"fake_{flavor}"
    fixture.__doc__ = (f"A fake {flavor} ({', '.join(FLAVORS[flavor])}) first on PATH; see "
                       f"pw_spawner.testing.fake.{fake_cli.flavors()[flavor].scheduler}.")
    return pytest.fixture(name=f"fake_{flavor}")(fixture)


# fake_slurm, fake_pbs, fake_torque, ...: one fixture per flavour.
for _flavor in FLAVORS:
    globals()[f"fake_{_flavor}"] = _fixture(_flavor)
