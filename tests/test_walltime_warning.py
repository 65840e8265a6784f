"""The walltime warning: the job asks Slurm for ``SIGUSR1`` before its walltime ends
(``--signal=B:USR1@<s>``, to the batch shell alone), traps it, records when it ends in service.json
(``ENDS_AT``) and runs on; the spawner's poll, in the session's last minutes, moves that end into the
session's row. With the mocked Slurm, whose job is the script's own bash (signalled here as
``scancel --batch --signal=USR1`` would)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from support.fake_commands import wait_until

from pw_spawner.sessions.journal import shared_store
from pw_spawner.status import ServiceStatus
from pw_spawner.testing.plugin import FakeScheduler

PROFILES = [{"slug": "small", "display_name": "Small", "default": True,
             "job": {"cores": 1, "memory": "512M", "walltime": "00:30:00"}}]


def _text(path: Path | str) -> str:
    return Path(path).read_text()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


async def test_the_warning_is_recorded_and_the_app_runs_on(fake_slurm: FakeScheduler, spawner_factory,
                                                           tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sessions.sqlite'}"
    # 29 of the 30 minutes: the session is in its last minutes at once, so poll() looks.
    spawner = spawner_factory(scheduler="slurm", profile_list=PROFILES, bind_ip="127.0.0.1",
                              connect_host="127.0.0.1", sessions_db_url=url, walltime_warning_minutes=29)
    app_url = await spawner.start()
    job = fake_slurm.job(spawner.job.job_id)
    assert "#SBATCH --signal=B:USR1@1740" in _text(job["script"])
    service_path = Path(spawner.job.job_dir) / "service.json"
    before = time.time()
    os.kill(job["pid"], signal.SIGUSR1)
    # (A blocking wait is fine here: the job is another process, and nothing of the hub runs.)
    wait_until(lambda: "ENDS_AT" in _text(service_path), timeout=15)
    record = json.loads(_text(service_path))
    assert before + 1740 - 2 <= record["ENDS_AT"] <= time.time() + 1740
    assert ServiceStatus.from_json(_text(service_path)).ends_at == record["ENDS_AT"]
    assert record["JOB_STATUS"] == "RUNNING"  # the rest of the record as it was

    # The trap interrupted the shell's wait for the app: the app and the job run on.
    assert await spawner.poll() is None
    assert _answers(app_url.rstrip("/") + "/api/status") or _answers(app_url)
    assert fake_slurm.job(spawner.job.job_id)["state"] == "RUNNING"
    rows, _ = await (await shared_store(url)).list(user=spawner.user.name)
    assert rows[0].ends == datetime.fromtimestamp(record["ENDS_AT"], timezone.utc)


def test_service_json_ends_at_is_checked():
    good = {"JOB_STATUS": "RUNNING", "PORT": 8888}
    assert ServiceStatus.from_json(json.dumps(good)).ends_at is None
    assert ServiceStatus.from_json(json.dumps({**good, "ENDS_AT": 1_800_000_000})).ends_at == 1_800_000_000
    for bad in ("1800000000", 1.8e9, True, -1, 10**12, [1]):
        try:
            ServiceStatus.from_json(json.dumps({**good, "ENDS_AT": bad}))
        except ValueError as exc:
            assert "ENDS_AT" in str(exc)
        else:
            raise AssertionError(f"ENDS_AT {bad!r} was taken")
