"""The fault suite: a job that writes a hostile or broken service.json, and a port squatter.

Each case runs a real spawner on the ``local`` target whose "app" is a small hostile program: it
writes service.json itself (again and again, so the job's own record cannot win) and never
listens. The hub must end the start within seconds with a message naming the field, cancel the
job, keep its own memory bounded, and never hand out a route to anything the job chose.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import resource
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from jupyterhub.spawner import SpawnException

from pw_spawner.status import ServiceStatus, ServiceStatusError

pytestmark = pytest.mark.faults

# The hostile app: PW_JOB_DIR and PW_JOB_ID come from the job script. It replaces service.json
# (whatever form the payload takes) every 50 ms for as long as the job lives.
HOSTILE_APP = textwrap.dedent('''
    import json, os, sys, time
    mode, payload = sys.argv[1], sys.argv[2]
    job_dir = os.environ["PW_JOB_DIR"]
    target = os.path.join(job_dir, "service.json")
    tmp = os.path.join(job_dir, ".hostile")
    payload = payload.replace("@JOB_ID@", os.environ.get("PW_JOB_ID", ""))
    while True:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if mode == "symlink":
            os.symlink(payload, tmp)
        elif mode == "fifo":
            os.mkfifo(tmp)
        elif mode == "big":
            with open(tmp, "w") as f:
                f.write(" " * (10 * 1024 * 1024) + "{}")
        else:
            with open(tmp, "w") as f:
                f.write(payload)
        os.replace(tmp, target)
        time.sleep(0.05)
''')


def running(fields: dict) -> str:
    record = {"JOB_STATUS": "RUNNING", "URL": "/me", "PORT": 34567, "SLUG": "", "HOST": "127.0.0.1",
              "ERROR_MESSAGE": "", "JOB_ID": "@JOB_ID@"}
    record.update(fields)
    return json.dumps(record)


# (case id, mode, payload, what the message must name)
CASES = [
    ("symlink-dev-zero", "symlink", "/dev/zero", "symbolic link"),
    ("ten-megabytes", "big", "", "larger than"),
    ("fifo", "fifo", "", "not a regular file"),
    ("host-with-port", "json", running({"HOST": "evil.example:6379/#"}), "HOST"),
    ("host-with-slash", "json", running({"HOST": "127.0.0.1/x"}), "HOST"),
    ("host-with-hash", "json", running({"HOST": "a#b"}), "HOST"),
    ("port-bool", "json", running({"PORT": True}), "PORT"),
    ("port-float", "json", running({"PORT": 8888.9}), "PORT"),
    ("port-zero", "json", running({"PORT": 0}), "PORT"),
    ("port-ssh", "json", running({"PORT": 22}), "PORT"),
    ("port-infinity", "json", running({}).replace("34567", "Infinity"), "Infinity"),
    ("port-huge", "json", running({"PORT": 10**30}), "PORT"),
    ("slug-braces", "json", running({"SLUG": "{x}"}), "SLUG"),
    ("slug-other-host", "json", running({"SLUG": "//evil.example/"}), "SLUG"),
    ("slug-traversal", "json", running({"SLUG": "../../hub/admin"}), "SLUG"),
    ("url-scheme", "json", running({"URL": "http://evil.example"}), "URL"),
    # Within the size cap (and one command-line word), deep enough for a RecursionError.
    ("deep-nesting", "json", "[" * 30000 + "]" * 30000, "nested too deeply"),
    ("wrong-job-id", "json", running({"JOB_ID": "999999"}), "JOB_ID"),
    ("no-job-id", "json", running({"JOB_ID": None}), "JOB_ID"),
    ("not-an-object", "json", "[1, 2]", "service.json"),
    ("job-status-list", "json", running({"JOB_STATUS": ["RUNNING"]}), "JOB_STATUS"),
]


def group_alive(pgid: str) -> bool:
    try:
        os.killpg(int(pgid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def plant_record(job_dir: Path, text: str) -> None:
    job_dir.mkdir(parents=True, mode=0o700)
    (job_dir / "service.json").write_text(text)


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def start_expecting_refusal(spawner, faults, case: str, seconds: float = 30) -> str:
    """start() must fail within ``seconds`` with a message; a returned URL is a redirected route."""
    started = time.monotonic()
    try:
        url = await asyncio.wait_for(spawner.start(), seconds)
    except SpawnException as exc:
        message = getattr(exc, "jupyterhub_message", str(exc))
        faults.record("routes redirected", 0)
        return message
    except asyncio.TimeoutError:
        faults.record("orphans", 1, f"{case}: start() still running after {seconds} s")
        raise AssertionError(f"{case}: start() did not end within {seconds} s") from None
    faults.record("routes redirected", 1, f"{case}: start() returned {url} after "
                                          f"{time.monotonic() - started:.1f} s")
    return ""


async def assert_job_gone(spawner, faults, case: str, job_id: str | None) -> None:
    if job_id is None:
        return
    for _ in range(50):
        if not group_alive(job_id):
            break
        await asyncio.sleep(0.1)
    orphan = group_alive(job_id)
    faults.record("orphans", int(orphan), f"{case}: job {job_id} still running" if orphan else "")


@pytest.mark.parametrize("case,mode,payload,named", CASES, ids=[c[0] for c in CASES])
async def test_hostile_service_record_is_refused(spawner_factory, faults, case, mode, payload, named):
    faults.case()
    spawner = spawner_factory(cmd=[sys.executable, "-c", HOSTILE_APP, mode, payload], job_start_timeout=60)
    submitted: list[str] = []
    original = spawner._submit

    async def remember(*args, **kwargs):
        job = await original(*args, **kwargs)
        submitted.append(job.job_id)
        return job

    spawner._submit = remember
    rss_before = max_rss_mb()
    started = time.monotonic()
    message = await start_expecting_refusal(spawner, faults, case)
    took = time.monotonic() - started
    grew = max_rss_mb() - rss_before
    faults.check("routes redirected")
    assert "invalid service record" in message and named in message, message
    assert "\n" not in message and "Traceback" not in message
    assert took < 15, f"{case}: refusal took {took:.1f} s"
    # The hub copied at most the cap of the file, not what the job offered.
    assert grew < 50, f"{case}: the hub's peak memory grew by {grew:.0f} MB"
    assert spawner.job is None
    await assert_job_gone(spawner, faults, case, submitted[0] if submitted else None)
    faults.check()


async def test_stale_record_of_an_earlier_job_is_not_used(spawner_factory, faults, tmp_path):
    """A RUNNING record left by an earlier job (or planted) never becomes this start's route."""
    faults.case()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        spawner = spawner_factory(cmd=[sys.executable, "-c", "import time; time.sleep(60)"],
                                  job_start_timeout=2)
        job_dir = Path(await spawner.job_dir(spawner.make_executor()))
        await asyncio.to_thread(plant_record, job_dir, running({"PORT": port, "JOB_ID": "1"}))
        message = await start_expecting_refusal(spawner, faults, "stale record")
        faults.check("routes redirected")
        assert str(port) not in message
        assert "did not listen" in message, message
    finally:
        listener.close()


async def test_control_characters_stay_out_of_messages(spawner_factory, faults):
    faults.case()
    record = json.dumps({"JOB_STATUS": "STARTING", "ERROR_MESSAGE": "line1\nline2\r\x1b[31mred\u2028x\x00",
                         "JOB_ID": "@JOB_ID@"})
    spawner = spawner_factory(cmd=[sys.executable, "-c", HOSTILE_APP, "json", record], job_start_timeout=3)
    await start_expecting_refusal(spawner, faults, "control characters", seconds=30)
    for event in spawner._events:
        assert not any(ch in event["message"] for ch in "\n\r\x1b\u2028\x00"), event
    assert any("line1 line2" in event["message"].lower() for event in spawner._events), spawner._events
    faults.check()


def test_record_checks_name_the_field():
    """The checks themselves, without a job: each refusal names its field."""
    good = {"JOB_STATUS": "running", "PORT": "8888", "JOB_ID": "12", "SLUG": "lab/tree?x=1"}
    status = ServiceStatus.from_json(json.dumps(good))
    assert status.port == 8888 and status.slug == "lab/tree?x=1"
    for field, value in (("PORT", 1023), ("PORT", 65536), ("PORT", "8888 "), ("HOST", "a b"),
                         ("SLUG", "a\\b"), ("SLUG", "x/../../y"), ("URL", "/mee"), ("ERROR_MESSAGE", 5),
                         ("JOB_ID", "1;2")):
        with pytest.raises(ServiceStatusError) as caught:
            ServiceStatus.from_json(json.dumps({**good, field: value}))
        assert caught.value.field == field, (field, value, caught.value)


# ---- a squatter: another account takes the port the job picked ------------------------------------

SQUATTER = textwrap.dedent('''
    import socket, sys, time
    s = socket.socket()
    s.bind(("127.0.0.1", int(sys.argv[1])))
    s.listen()
    time.sleep(float(sys.argv[2]))
''')

# The "app": hands its port to a squatter of another account (detached: not the app's child, as a
# process another user started would be) and never listens itself, as an app that moved to
# another port would. With ``claim``, the job also writes RUNNING with the squatter's port itself.
SQUATTED_APP = textwrap.dedent('''
    import json, os, subprocess, sys, time, socket
    port = int([a for a in sys.argv if a.startswith("--port=")][0].split("=", 1)[1])
    squatter, claim = sys.argv[1], sys.argv[2] == "claim"
    subprocess.run(["setsid", "-f", "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                    "/usr/bin/python3", "-c", squatter, str(port), "30"], check=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    if claim:
        record = {"JOB_STATUS": "RUNNING", "PORT": port, "HOST": "127.0.0.1", "URL": "/me",
                  "JOB_ID": os.environ["PW_JOB_ID"]}
        path = os.path.join(os.environ["PW_JOB_DIR"], "service.json")
        with open(path + ".x", "w") as f:
            json.dump(record, f)
        os.replace(path + ".x", path)
    time.sleep(60)
''')


@pytest.fixture
def squatters():
    """Ends every squatter the test started (they run detached, as nobody)."""
    yield
    subprocess.run(["pkill", "-u", "nobody", "-f", "socket.socket"], check=False)


@pytest.mark.parametrize("claim", ["job-check", "claim"])
async def test_port_squatter_never_gets_the_route(spawner_factory, faults, squatters, claim):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.fail("the squatter case needs root and setpriv (util-linux) to run as another account")
    pwd.getpwnam("nobody")
    faults.case()
    spawner = spawner_factory(cmd=[sys.executable, "-c", SQUATTED_APP, SQUATTER, claim], job_start_timeout=20)
    message = await start_expecting_refusal(spawner, faults, f"squatter ({claim})")
    faults.check("routes redirected")
    # The job's own check sees the squatter first, or (when the job lies) the hub sees that the port
    # is not held by the job's account; either way the start fails and nothing is routed.
    expected = ("taken by another process", "not the job's own listener") if claim == "claim" \
        else ("taken by another process",)
    assert any(word in message for word in expected), message

