"""Fault suite: a scheduler whose status queries fail, print garbage or hang (the mocked Slurm and PBS).

The spawner runs a real job (the fake app) through pw_spawner's fake scheduler. A shim put first on
PATH stands in for the query commands (squeue, scontrol, sacct; qstat, qselect) and, as a file
written by the test says, fails as a controller that is down does (exit 1), prints garbage (exit 0),
or hangs. Submitting and cancelling keep working throughout, as they do when only the controller's
read path is sick.

Bursts of faults shorter than ``unknown_state_grace``, even two that add up to more than it with a
good answer in between, must never end the session (poll() returns None and the app still answers:
"lost sessions"). A fault longer than the grace makes poll() say the server is gone; JupyterHub then
never calls stop() (user.stop() stops only a server that poll() says is running), so the spawner
itself must have cancelled the job by then, or it runs on with nobody wanting it ("orphans").

The executor's timeout for a query is 30 s; the hang cases cut it to QUERY_TIMEOUT for the query
commands only, so that a hanging query runs into that same timeout path within a short test.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pw_spawner.remote.executor import LocalExecutor
from pw_spawner.testing.plugin import FakeScheduler

pytestmark = pytest.mark.faults

GRACE = 2.5
POLL_INTERVAL = 0.2
#: How long a hanging query may run before the executor gives up on it, in these tests.
QUERY_TIMEOUT = 0.4
#: The default partition (Slurm) or queue (PBS): the fake knows ``debug`` for one, ``workq`` for the other.
PROFILES = [{"slug": "small", "display_name": "Small", "default": True,
             "job": {"cores": 1, "memory": "512M", "walltime": "00:30:00"}}]
QUERY_COMMANDS = {"slurm": ("squeue", "scontrol", "sacct"), "pbs": ("qstat", "qselect")}
GARBAGE = {
    # An error page from something in front of the controller, a truncated line, stray bytes.
    "slurm": "<html><body><h1>502 Bad Gateway</h1></body></html>\n1000|RUNN\n\x00\xff squeue: ",
    # A truncated JSON document: qstat was cut off mid-answer.
    "pbs": '{"timestamp": 1700000000, "pbs_version": "2022.1.0", "Jobs": {"1000.fakepbs": {"job_st',
}


def _shim(bin_dir: Path, real_bin: Path, flavor: str, mode_file: Path) -> None:
    """Query commands that obey ``mode_file``: ok (the fake's own), fail, garbage, hang."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in QUERY_COMMANDS[flavor]:
        real = shlex.quote(str(real_bin / name))
        (bin_dir / name).write_text("\n".join([
            "#!/bin/sh",
            f"# Fault shim for {name}, written by tests/test_faults_scheduler.py.",
            f"mode=$(cat {shlex.quote(str(mode_file))} 2>/dev/null)",
            'case "$mode" in',
            f'  fail) PW_FAKE_QUERY_FAIL=1 exec {real} "$@" ;;',
            f"  garbage) printf '%s' {shlex.quote(GARBAGE[flavor])}; exit 0 ;;",
            "  hang) exec sleep 600 ;;",
            "esac",
            f'exec {real} "$@"',
            "",
        ]))
        (bin_dir / name).chmod(0o755)


@pytest.fixture
def sick_scheduler(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """(fake scheduler, set_mode): the fake of the test's flavour behind the query shim."""
    flavor = request.param
    fake: FakeScheduler = request.getfixturevalue("fake_pbs" if flavor == "pbs" else "fake_slurm")
    mode_file = tmp_path / "query-mode"
    mode_file.write_text("ok")
    shim_dir = tmp_path / "query-shim"
    _shim(shim_dir, fake.bin_dir, flavor, mode_file)
    monkeypatch.setenv("PATH", f"{shim_dir}:{fake.env['PATH']}")

    real_run = LocalExecutor.run

    async def run(self: LocalExecutor, argv: Sequence[str], **kwargs: Any):
        if list(argv[:1]) and argv[0] in QUERY_COMMANDS[flavor]:
            kwargs["timeout"] = min(kwargs.get("timeout", 30), QUERY_TIMEOUT)
        return await real_run(self, argv, **kwargs)

    monkeypatch.setattr(LocalExecutor, "run", run)
    return fake, mode_file.write_text


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return "user" in json.loads(response.read())
    except (OSError, ValueError):
        return False


async def _polls(spawner: Any, seconds: float, rounds: int = 3) -> list[int | None]:
    """poll()'s answers, one round every poll interval (plus the query's own time), for ``seconds``;
    fewer rounds only if those take longer than 1.4 times that."""
    answers, began = [], time.monotonic()
    while True:
        elapsed = time.monotonic() - began
        if (elapsed >= seconds and len(answers) >= rounds) or elapsed >= 1.4 * seconds:
            return answers
        answers.append(await spawner.poll())
        await asyncio.sleep(POLL_INTERVAL)


async def _gone_after(spawner: Any, limit: float) -> tuple[int | None, float]:
    """Poll until poll() says the server is gone; (its answer, seconds it took), or (None, limit)."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        status = await spawner.poll()
        if status is not None:
            return status, time.monotonic() - began
        await asyncio.sleep(POLL_INTERVAL)
    return None, limit


def _active(fake: FakeScheduler, job_id: str) -> bool:
    job = fake.job(job_id)
    return job is not None and job["state"] in ("PENDING", "RUNNING")


@pytest.mark.parametrize(("sick_scheduler", "fault"), [
    ("slurm", "fail"), ("slurm", "garbage"), ("slurm", "hang"), ("pbs", "fail"), ("pbs", "garbage"),
], indirect=["sick_scheduler"])
async def test_query_faults_within_and_past_the_grace(sick_scheduler: tuple[FakeScheduler, Callable],
                                                     fault: str, spawner_factory, faults) -> None:
    fake, set_mode = sick_scheduler
    faults.case()
    spawner = spawner_factory(scheduler="slurm" if fake.flavor == "slurm" else "pbs", profile_list=PROFILES,
                              unknown_state_grace=GRACE, bind_ip="127.0.0.1", connect_host="127.0.0.1",
                              # The hub's poll interval: every poll round is answered by a fresh query.
                              status_refresh_interval=POLL_INTERVAL)
    url = await spawner.start()
    try:
        await _short_then_long(spawner, url, fake, set_mode, fault, faults)
    finally:
        set_mode("ok")  # so that the teardown's stop() can see the job end
    faults.check()


async def _short_then_long(spawner: Any, url: str, fake: FakeScheduler, set_mode: Callable, fault: str,
                           faults: Any) -> None:
    job_id = spawner.job.job_id
    assert _answers(url), "the app did not answer before any fault"

    # Two bursts shorter than the grace (0.5 to 0.7 of it), together longer than it, with a few good
    # answers between.
    for burst in ("first", "second"):
        set_mode(fault)
        answers = await _polls(spawner, 0.5 * GRACE)
        assert len(answers) >= 2, f"only {len(answers)} poll rounds in the {burst} burst"
        set_mode("ok")
        answers += await _polls(spawner, 4 * POLL_INTERVAL)
        if any(a is not None for a in answers) or not _answers(url):
            faults.record("lost sessions", 1, f"{fault} ({fake.flavor}), {burst} burst shorter than the "
                          f"grace: poll() answered {answers}, app answers: {_answers(url)}")
    faults.check("lost sessions")
    assert _active(fake, job_id), f"the job ended during the short bursts: {fake.job(job_id)}"

    # Past the grace: poll() says the server is gone, and by then nothing of the job is left running.
    set_mode(fault)
    status, took = await _gone_after(spawner, GRACE + 4 + (QUERY_TIMEOUT * 4 if fault == "hang" else 0))
    assert status is not None, f"poll() never gave up on a scheduler that is {fault} for {took:.1f} s"
    if took < GRACE:
        faults.record("lost sessions", 1, f"{fault} ({fake.flavor}): gone after {took:.1f} s, before the "
                      f"{GRACE} s grace")
    # JupyterHub calls stop() only for a server poll() says is running: the job is the spawner's to end.
    for _ in range(25):  # 5 s
        if not _active(fake, job_id):
            break
        await asyncio.sleep(0.2)
    if _active(fake, job_id):
        faults.record("orphans", 1, f"{fault} ({fake.flavor}): poll() said gone after {took:.1f} s of "
                      f"faults, and 5 s later job {job_id} is still {fake.job(job_id)['state']} "
                      "(never cancelled)")
