"""Record what real Grid Engine commands print, for parser unit tests.

Run once, as root, on a machine with the gridengine packages (.ci/install-system.sh)::

    .venv/bin/python tests/data/sge/record.py

It starts a private cell (tests/support/sge_cell.py), submits jobs as ``pwtestuser``, writes
each command's output verbatim next to this file and rewrites README.md (command, exit code,
which stream the file holds, SGE version, date). Job ids and host names are left as they came.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/

from support.sge_cell import SGECell  # noqa: E402
from support.slurm_cluster import ensure_user  # noqa: E402

USER = "pwtestuser"
MANIFEST: list[tuple[str, str, int, str, str]] = []  # file, command, rc, stream, note


def save(name: str, r: subprocess.CompletedProcess[str], cmd: str, note: str = "") -> str:
    """Write the stream that holds the answer (stdout, else stderr) to ``name``."""
    stream, text = ("stdout", r.stdout) if r.stdout else ("stderr", r.stderr)
    if r.stdout and r.stderr:
        stream, text = "stdout+stderr", r.stdout + r.stderr
    (HERE / name).write_text(text)
    MANIFEST.append((name, cmd, r.returncode, stream, note))
    print(f"{name}: rc {r.returncode}, {stream}, {len(text)} chars")
    return text


def qstat_state(cell: SGECell, job_id: str) -> str:
    for line in cell.run("qstat", "-u", "*").stdout.splitlines()[2:]:
        f = line.split()
        if f[:1] == [job_id]:
            return f[4]
    return ""


def wait_state(cell: SGECell, job_id: str, wanted: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while qstat_state(cell, job_id) != wanted:
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} never reached {wanted}")
        time.sleep(0.05)


def wait_gone(cell: SGECell, job_id: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while job_id in cell.job_ids():
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} never left qstat")
        time.sleep(0.1)


def wait_scheduling_info(cell: SGECell, job_id: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while "scheduling info:" not in cell.run("qstat", "-j", job_id).stdout:
        if time.monotonic() > deadline:
            raise SystemExit(f"no scheduling info for job {job_id}")
        time.sleep(0.2)


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="pw-sge-record-"))
    user = ensure_user(USER)
    work = Path(tempfile.mkdtemp(prefix="pwtest-sge-record-", dir=user.pw_dir))
    os.chown(work, user.pw_uid, user.pw_gid)
    cell = SGECell(base / "cell").start()
    try:
        record(cell, work)
    finally:
        cell.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)
    version = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "gridengine-master"], capture_output=True, text=True
    ).stdout
    write_readme(version, cell)


def as_user(cell: SGECell, *argv: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    return cell.run_as(USER, *argv, input=script)


def record(cell: SGECell, work: Path) -> None:
    save("qhost.txt", cell.run("qhost"), "qhost")
    save("qhost-xml.xml", cell.run("qhost", "-xml"), "qhost -xml")
    save("qstat-xml-empty.xml", cell.run("qstat", "-xml", "-u", USER), f"qstat -xml -u {USER}",
         "no jobs")

    # A plain submission (no -terse), then a running job.
    r = as_user(cell, "qsub", "-N", "pwrun", "-o", str(work / "run.out"), "-j", "y",
                script="sleep 300\n")
    save("qsub-submitted.txt", r, "qsub -N pwrun -o FILE -j y  (script on stdin)")
    running = r.stdout.split()[2]
    wait_state(cell, running, "r")
    save("qstat-xml-running.xml", cell.run("qstat", "-xml", "-u", USER), f"qstat -xml -u {USER}",
         f"job {running} running")
    save("qstat-running.txt", cell.run("qstat", "-u", USER), f"qstat -u {USER}",
         f"job {running} running")
    save("qstat-j-running.txt", cell.run("qstat", "-j", running), f"qstat -j {running}",
         "running job")

    # Pending for ever (needs 99 slots) and held, next to the running one.
    r = as_user(cell, "qsub", "-terse", "-N", "pwpe99", "-pe", "smp", "99", "-o", "/dev/null",
                "-j", "y", script="true\n")
    save("qsub-terse.txt", r, "qsub -terse -N pwpe99 -pe smp 99 -o /dev/null -j y",
         "accepted, never schedulable")
    pe99 = r.stdout.strip()
    r = as_user(cell, "qsub", "-terse", "-N", "pwmem", "-l", "h_vmem=999G", "-o", "/dev/null",
                "-j", "y", script="true\n")
    mem = r.stdout.strip()
    r = as_user(cell, "qsub", "-terse", "-h", "-N", "pwheld", "-o", "/dev/null", "-j", "y",
                script="true\n")
    held = r.stdout.strip()
    wait_scheduling_info(cell, pe99)
    wait_scheduling_info(cell, mem)
    save("qstat-xml-mixed.xml", cell.run("qstat", "-xml", "-u", USER), f"qstat -xml -u {USER}",
         f"{running} running; {pe99} (-pe smp 99), {mem} (-l h_vmem=999G) pending; {held} held")
    save("qstat-mixed.txt", cell.run("qstat", "-u", USER), f"qstat -u {USER}", "same jobs")
    save("qstat-j-pending-pe.txt", cell.run("qstat", "-j", pe99), f"qstat -j {pe99}",
         "pending, -pe smp 99: see 'scheduling info:'")
    save("qstat-j-pending-vmem.txt", cell.run("qstat", "-j", mem), f"qstat -j {mem}",
         "pending, -l h_vmem=999G: see 'scheduling info:'")
    save("qstat-xml-j-pending.xml", cell.run("qstat", "-xml", "-j", pe99), f"qstat -xml -j {pe99}",
         "reason in `<MES_message>`")
    save("qstat-j-held.txt", cell.run("qstat", "-j", held), f"qstat -j {held}", "held (qsub -h)")

    # qdel: the running one shows dr for about a second.
    r = as_user(cell, "qdel", running)
    save("qdel.txt", r, f"qdel {running}", "as the owner, job running")
    deadline = time.monotonic() + 5
    while qstat_state(cell, running) != "dr" and time.monotonic() < deadline:
        time.sleep(0.02)
    save("qstat-xml-deleting.xml", cell.run("qstat", "-xml", "-u", USER), f"qstat -xml -u {USER}",
         f"job {running} after qdel (dr), the others still pending")
    as_user(cell, "qdel", pe99, mem, held)
    for job in (running, pe99, mem, held):
        wait_gone(cell, job)
    save("qdel-missing.txt", as_user(cell, "qdel", running), f"qdel {running}",
         "the job has already left")
    save("qacct-j-qdel.txt", cell.run("qacct", "-j", running), f"qacct -j {running}",
         "killed by qdel")
    save("qstat-j-missing.txt", cell.run("qstat", "-j", running), f"qstat -j {running}",
         "the job has ended")
    save("qstat-xml-j-missing.xml", cell.run("qstat", "-xml", "-j", running),
         f"qstat -xml -j {running}", "the job has ended")

    # A job that ends by itself with exit status 3.
    r = as_user(cell, "qsub", "-terse", "-N", "pwexit3", "-pe", "smp", "2", "-l",
                "h_vmem=1G,h_rt=00:05:00", "-o", "/dev/null", "-j", "y", script="exit 3\n")
    done = r.stdout.strip()
    wait_gone(cell, done)
    deadline = time.monotonic() + 10
    while cell.run("qacct", "-j", done).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    save("qacct-j.txt", cell.run("qacct", "-j", done), f"qacct -j {done}",
         "-pe smp 2 -l h_vmem=1G,h_rt=00:05:00, script 'exit 3'")
    save("qacct-j-missing.txt", cell.run("qacct", "-j", "999999"), "qacct -j 999999",
         "an id never used")
    save("qstat-xml-zombie.xml", cell.run("qstat", "-xml", "-s", "z", "-u", USER),
         f"qstat -xml -s z -u {USER}", "finished jobs (finished_jobs 100)")

    # Refused at submission.
    refused = {
        "qsub-refused-nosuch-queue.txt": ("-q", "nosuch.q"),
        "qsub-refused-nosuch-pe.txt": ("-pe", "nosuch", "1"),
        "qsub-refused-unknown-resource.txt": ("-l", "nosuchres=1"),
        "qsub-refused-bad-time.txt": ("-l", "h_rt=abc"),
        "qsub-refused-w-e-pe99.txt": ("-w", "e", "-pe", "smp", "99"),
        "qsub-refused-w-e-vmem.txt": ("-w", "e", "-l", "h_vmem=999G"),
    }
    for name, args in refused.items():
        r = as_user(cell, "qsub", "-terse", *args, "-o", "/dev/null", "-j", "y", script="true\n")
        save(name, r, f"qsub -terse {' '.join(args)} -o /dev/null -j y", f"as {USER}")
    r = cell.run("qsub", "-terse", "-o", "/dev/null", "-j", "y", input="true\n")
    save("qsub-refused-root.txt", r, "qsub -terse -o /dev/null -j y", "as root (min_uid 1000)")


def write_readme(version: str, cell: SGECell) -> None:
    today = datetime.date.today().isoformat()
    rows = "\n".join(
        f"| `{name}` | `{cmd}` | {rc} | {stream} | {note} |"
        for name, cmd, rc, stream, note in MANIFEST
    )
    (HERE / "README.md").write_text(f"""# Real Grid Engine outputs

Recorded by `tests/data/sge/record.py` (run as root: `.venv/bin/python tests/data/sge/record.py`)
on {today}, Debian bookworm, Son of Grid Engine 8.1.9 (package gridengine-master {version}),
host `{cell.hostname}` ({cell.cpus} CPUs), with the private cell of
`tests/support/sge_cell.py` (`SGE_CELL={cell.env['SGE_CELL']}`, queue `all.q`, parallel
environment `smp`, `h_vmem` consumable). Jobs were submitted as `pwtestuser` (through `su`),
the other commands ran as root (a manager of the cell). Job ids and host names are as they came.

Each file holds one command's output verbatim: the stream named below (stdout when the command
wrote there, else stderr). The exit code is the command's.

Job states seen in `qstat` / `qstat -xml` `<state>`: `qw` pending, `hqw` held, `t` being
started, `r` running, `dr` deleted while running (for ~1 s, then gone), `z` finished (only with
`-s z`). Running ones are `<job_list state="running">` under `<queue_info>`, the others
`<job_list state="pending">` under `<job_info>`.

| file | command | rc | stream | note |
|---|---|---|---|---|
{rows}
""")


if __name__ == "__main__":
    main()
