"""pw_spawner/schedulers/slurm.py's parsers and SlurmScheduler's query, submit, find and cancel, on what a
real Slurm 22.05 printed: tests/data/slurm/ holds the stdout, stderr and exit code of the very commands
SlurmScheduler runs, recorded on the single-node test cluster by tests/support/record_slurm_outputs.py
(its README says which command made which file, and how to re-record; manifest.json says which job id
played which role: running, pending for Resources, JobHeldUser, Dependency, ..., completed, failed with
exit 3, cancelled, killed over its memory by its cgroup (OUT_OF_MEMORY), timed out).  The scheduler is
driven through a stub executor that answers each argv with the recorded result, so this file only reads
files and starts no Slurm; hand-written inputs cover what a recording cannot show (truncated lines,
``(null)``, empty output, a COMPLETING job, sacct with a database).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pw_spawner.remote.executor import CommandResult
from pw_spawner.schedulers.base import JobInfo, JobRef, SchedulerError, SubmitError
from pw_spawner.schedulers.cache import StatusCache
from pw_spawner.schedulers.reasons import job_words
from pw_spawner.schedulers.slurm import (
    _STATES,
    NO_ESTIMATE_AFTER,
    SQUEUE_FORMAT,
    SlurmScheduler,
    parse_private_data,
    parse_sacct,
    parse_scontrol,
    parse_slurm_time,
    parse_squeue,
    slurm_end_reason,
    slurm_state,
    submit_error_message,
)
from pw_spawner.status import JobState

DATA = Path(__file__).resolve().parent / "data" / "slurm"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
JOBS: dict[str, str] = MANIFEST["jobs"]
NODE: str = MANIFEST["node"]
#: When the files were recorded (what "now" was for the estimated starts in them).
RECORDED_AT = datetime.strptime(MANIFEST["recorded_at"], "%Y-%m-%d %H:%M UTC").replace(tzinfo=timezone.utc)
UNKNOWN_ID: str = MANIFEST["unknown_id"]
COMMANDS = {c["name"]: c for c in MANIFEST["commands"]}

#: What squeue printed for each job (state, %T, %r as the parser keeps it, whether %N names the node),
#: and how the job ended (JobInfo.end_reason, from the state word).
SQUEUE_EXPECTED = {
    "refused_memory": (JobState.FAILED, "FAILED", "BadConstraints", False, "FAILED"),
    "completed": (JobState.COMPLETED, "COMPLETED", "", True, "COMPLETED"),
    "failed": (JobState.FAILED, "FAILED", "NonZeroExitCode", True, "FAILED"),
    "cancelled": (JobState.CANCELLED, "CANCELLED", "", True, "CANCELLED"),
    "out_of_memory": (JobState.FAILED, "OUT_OF_MEMORY", "OutOfMemory", True, "OUT_OF_MEMORY"),
    "running": (JobState.RUNNING, "RUNNING", "", True, ""),
    "spoofing_name": (JobState.COMPLETED, "COMPLETED", "", True, "COMPLETED"),
    "timeout": (JobState.FAILED, "TIMEOUT", "TimeLimit", True, "TIMEOUT"),
    "pending_resources": (JobState.PENDING, "PENDING", "Resources", False, ""),
    "pending_held": (JobState.PENDING, "PENDING", "JobHeldUser", False, ""),
    "pending_dependency": (JobState.PENDING, "PENDING", "Dependency", False, ""),
    "pending_partition_time_limit": (JobState.PENDING, "PENDING", "PartitionTimeLimit", False, ""),
    "pending_too_many_cpus": (JobState.PENDING, "PENDING", "PartitionConfig", False, ""),
    "pending_too_many_nodes": (JobState.PENDING, "PENDING", "PartitionNodeLimit", False, ""),
}
#: scontrol's ExitCode=<code>:<signal> for each job, and the code parse_scontrol keeps.
EXIT_CODES = {
    "refused_memory": ("0:1", 0), "completed": ("0:0", 0), "failed": ("3:0", 3),
    "cancelled": ("0:15", 0), "out_of_memory": ("0:125", 0), "running": ("0:0", 0),
    "spoofing_name": ("0:0", 0),
    "timeout": ("0:15", 0), "pending_resources": ("0:0", 0), "pending_held": ("0:0", 0),
    "pending_dependency": ("0:0", 0), "pending_partition_time_limit": ("0:0", 0),
    "pending_too_many_cpus": ("0:0", 0), "pending_too_many_nodes": ("0:0", 0),
}


def stdout(name: str) -> str:
    entry = COMMANDS[name]
    return (DATA / entry["stdout"]).read_text() if entry["stdout"] else ""


def stderr(name: str) -> str:
    entry = COMMANDS[name]
    return (DATA / entry["stderr"]).read_text() if entry["stderr"] else ""


def recorded(name: str) -> CommandResult:
    """The recorded command as the executor would have returned it."""
    entry = COMMANDS[name]
    return CommandResult(tuple(entry["argv"]), entry["returncode"], stdout(name), stderr(name))


def squeue_argv(ids: Sequence[str]) -> tuple[str, ...]:
    return ("squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", SQUEUE_FORMAT)


def sacct_argv(ids: Sequence[str]) -> tuple[str, ...]:
    return ("sacct", "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State,ExitCode,NodeList")


SCONTROL_ALL = ("scontrol", "-o", "show", "job")


def squeue_listing(ids: Sequence[str], *, missing: Sequence[str] = ()) -> CommandResult:
    """squeue's answer for ``ids``: the recorded lines of those jobs (squeue -j lists just them), less
    ``missing`` (a squeue that did not see a job, as during a controller fail-over)."""
    lines = [line for line in stdout("squeue-mixed").splitlines(keepends=True)
             if line.split("|")[0] in ids and line.split("|")[0] not in missing]
    return CommandResult(squeue_argv(ids), 0, "".join(lines), "")


class RecordedExecutor:
    """Answers each argv with a recorded result; any other command fails the test."""

    def __init__(self, answers: dict[tuple[str, ...], CommandResult]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []
        self.prefix: tuple[str, ...] = ()

    async def run(self, argv: Sequence[str], *, input: str | None = None, timeout: float = 30,
                  max_output: int = 0) -> CommandResult:
        self.calls.append(tuple(argv))
        assert tuple(argv) in self.answers, f"unexpected command {argv}"
        return self.answers[tuple(argv)]


def refs(*roles: str) -> list[JobRef]:
    return [JobRef(JOBS[r] if r in JOBS else r, f"job-{r}", f"/jobs/{r}") for r in roles]


def scontrol_line(role: str) -> str:
    prefix = f"JobId={JOBS[role]} "
    (line,) = [line for line in stdout("scontrol-o-show-job").splitlines() if line.startswith(prefix)]
    return line


# -- the recording itself -----------------------------------------------------------------------------


def test_recording_is_of_the_modules_commands():
    assert MANIFEST["slurm_version"].startswith("slurm-wlm 22.05")
    assert MANIFEST["squeue_format"] == SQUEUE_FORMAT  # else re-record: the files are of another format
    assert "timeout" in JOBS, "re-recorded without a TIMEOUT job (see tests/data/slurm/README.md)"
    assert "out_of_memory" in JOBS, "re-recorded without memory confined (see tests/data/slurm/README.md)"
    assert MANIFEST["memory_enforcement"] is True
    assert set(JOBS) == set(SQUEUE_EXPECTED)
    assert tuple(COMMANDS["squeue-mixed"]["argv"]) == squeue_argv(list(JOBS.values()))
    assert tuple(COMMANDS["scontrol-o-show-job"]["argv"]) == SCONTROL_ALL
    assert tuple(COMMANDS["sacct-no-slurmdbd"]["argv"]) == sacct_argv(list(JOBS.values()))


# -- slurm_state --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "state"), [
    ("PENDING", JobState.PENDING), ("RUNNING", JobState.RUNNING), ("COMPLETED", JobState.COMPLETED),
    ("FAILED", JobState.FAILED), ("CANCELLED", JobState.CANCELLED), ("TIMEOUT", JobState.FAILED),
    ("CANCELLED by 1001", JobState.CANCELLED),  # sacct's wording
    ("CANCELLED+", JobState.CANCELLED),  # sacct, when the column is too narrow
    ("running", JobState.RUNNING), ("  COMPLETING  ", JobState.COMPLETED),
    ("", JobState.UNKNOWN), ("   ", JobState.UNKNOWN), ("RUNNINGX", JobState.UNKNOWN),
    ("(null)", JobState.UNKNOWN), ("STATE", JobState.UNKNOWN),
])
def test_slurm_state(raw, state):
    assert slurm_state(raw) is state


def test_every_state_squeue_printed_is_known():
    raws = {line.split("|")[1] for line in stdout("squeue-mixed").splitlines()}
    assert raws == {"PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY"}
    assert all(slurm_state(raw) is not JobState.UNKNOWN for raw in raws)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_slurm_state_never_raises_and_unknown_words_are_unknown(text):
    state = slurm_state(text)
    assert isinstance(state, JobState)
    words = text.split()
    if not words or words[0].upper().rstrip("+") not in _STATES:
        assert state is JobState.UNKNOWN


@given(st.sampled_from(sorted(_STATES)), st.text(alphabet=st.characters(blacklist_categories=["Zs", "Cc"])))
def test_slurm_state_reads_the_first_word_only(word, rest):
    assert slurm_state(f"{word} {rest}") is _STATES[word]
    assert slurm_state(f"{word.lower()}+\n") is _STATES[word]


# -- parse_squeue -------------------------------------------------------------------------------------


def test_parse_squeue_mixed():
    infos = parse_squeue(stdout("squeue-mixed"), now=RECORDED_AT)
    expected = {
        JOBS[role]: JobInfo(JOBS[role], state, raw, reason, NODE if on_node else None, end_reason=end)
        for role, (state, raw, reason, on_node, end) in SQUEUE_EXPECTED.items()
    }
    assert infos == expected


def test_parse_squeue_pending_reasons_as_slurm_printed_them():
    infos = parse_squeue(stdout("squeue-mixed"))
    pending = {role: infos[JOBS[role]].reason for role in JOBS if infos[JOBS[role]].state is JobState.PENDING}
    assert pending == {
        "pending_resources": "Resources", "pending_held": "JobHeldUser", "pending_dependency": "Dependency",
        "pending_partition_time_limit": "PartitionTimeLimit", "pending_too_many_cpus": "PartitionConfig",
        "pending_too_many_nodes": "PartitionNodeLimit",
    }
    assert all(infos[JOBS[role]].node is None for role in pending)


def test_parse_squeue_pipe_in_the_job_name():
    # The name is the last field and the parser never reads it: "rec|pipe" adds a field, harmlessly.
    line = next(x for x in stdout("squeue-mixed").splitlines() if x.startswith(f"{JOBS['completed']}|"))
    assert line.startswith(f"{JOBS['completed']}|COMPLETED|None|{NODE}|") and line.endswith("|rec|pipe")
    assert parse_squeue(line) == {JOBS["completed"]: JobInfo(JOBS["completed"], JobState.COMPLETED,
                                                             "COMPLETED", "", NODE, end_reason="COMPLETED")}
    spoof = next(x for x in stdout("squeue-mixed").splitlines() if x.startswith(f"{JOBS['spoofing_name']}|"))
    assert spoof.endswith(f"|rec JobId={JOBS['running']} x")
    assert list(parse_squeue(spoof)) == [JOBS["spoofing_name"]]


def test_parse_squeue_known_and_unknown_ids():
    result = recorded("squeue-known-and-unknown")
    assert result.ok and result.stderr == ""  # squeue -j 5,999999 lists 5 and says nothing about 999999
    assert parse_squeue(result.stdout) == {
        JOBS["running"]: JobInfo(JOBS["running"], JobState.RUNNING, "RUNNING", "", NODE)}
    alone = recorded("squeue-unknown-id")
    assert (alone.returncode, alone.stdout) == (1, "")
    assert alone.stderr == "slurm_load_jobs error: Invalid job id specified\n"


@pytest.mark.parametrize("text", [
    "", "\n", "   \n\n",
    "5|RUNNING|None",  # cut before the node field
    "5|RUNN",
    "5",
    "|RUNNING|None|vm|x",  # no id
    "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n",
])
def test_parse_squeue_skips_what_it_cannot_read(text):
    assert parse_squeue(text) == {}


def test_parse_squeue_truncated_output_keeps_the_whole_lines():
    text = stdout("squeue-mixed")
    cut = text[: text.index(f"\n{JOBS['pending_resources']}|") + 4]  # ...\n8|PE
    infos = parse_squeue(cut)
    assert JOBS["pending_resources"] not in infos
    assert infos[JOBS["failed"]].state is JobState.FAILED


def test_parse_squeue_unknown_state_word():
    assert parse_squeue("5|WEIRD|None|vm|x\n")["5"] == JobInfo("5", JobState.UNKNOWN, "WEIRD", "", "vm")


def test_parse_squeue_null_reason_and_node_mean_none():
    # ``(null)`` is how Slurm prints a missing string: no reason, no node (parse_scontrol agrees).
    assert parse_squeue("12|PENDING|(null)|(null)|x\n")["12"] == JobInfo("12", JobState.PENDING, "PENDING")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(alphabet=st.characters(blacklist_characters="|\n\r"), max_size=12),
                         max_size=7).map("|".join), max_size=6).map("\n".join))
def test_parse_squeue_never_raises(text):
    infos = parse_squeue(text)
    firsts = {line.strip().split("|")[0] for line in text.splitlines()}
    assert set(infos) <= firsts
    assert all(info.job_id == job_id for job_id, info in infos.items())


# -- parse_scontrol -----------------------------------------------------------------------------------


def test_parse_scontrol_every_line_of_scontrol_o_show_job():
    lines = stdout("scontrol-o-show-job").splitlines()
    assert len(lines) == len(JOBS)
    for role, job_id in JOBS.items():
        if role == "spoofing_name":
            continue  # see test_parse_scontrol_job_name_cannot_change_the_job_id
        state, raw, reason, on_node, end = SQUEUE_EXPECTED[role]
        printed, code = EXIT_CODES[role]
        line = scontrol_line(role)
        assert f" ExitCode={printed} " in line
        node = NODE if on_node else None
        assert parse_scontrol(line) == JobInfo(job_id, state, raw, reason, node, code, end)


def test_parse_scontrol_failed_job_exit_code():
    expected = JobInfo(JOBS["failed"], JobState.FAILED, "FAILED", "NonZeroExitCode", NODE, 3, "FAILED")
    assert " ExitCode=3:0 " in stdout("scontrol-o-show-job-failed")
    assert parse_scontrol(stdout("scontrol-o-show-job-failed")) == expected
    multi = stdout("scontrol-show-job-failed")
    assert multi.count("\n") > 20 and "   JobState=FAILED Reason=NonZeroExitCode" in multi
    assert parse_scontrol(multi) == expected


def test_parse_scontrol_dependency_and_pending_node():
    line = scontrol_line("pending_dependency")
    assert f"Reason=Dependency Dependency=afterok:{JOBS['running']}(unfulfilled)" in line
    assert " NodeList= " in line and "ReqNodeList=(null)" in line
    info = parse_scontrol(line)
    assert (info.state, info.reason, info.node) == (JobState.PENDING, "Dependency", None)


def test_parse_scontrol_job_name_cannot_change_the_job_id():
    # Job names are their owner's to choose and `scontrol -o show job` lists every user's jobs: a name
    # holding " JobId=5 " must not make this line job 5.
    line = scontrol_line("spoofing_name")
    assert line.startswith(f"JobId={JOBS['spoofing_name']} JobName=rec JobId={JOBS['running']} x UserId=")
    info = parse_scontrol(line)
    assert info is not None
    assert info.job_id == JOBS["spoofing_name"]
    assert (info.state, info.node) == (JobState.COMPLETED, NODE)


@pytest.mark.parametrize("text", [
    "", "\n", "No jobs in the system\n", "slurm_load_jobs error: Invalid job id specified\n",
    "JobId=3 JobName=rec-failed UserId=pwtestuser(1001)",  # cut before JobState
    "JobName=x JobState=RUNNING",  # no JobId
])
def test_parse_scontrol_without_a_job(text):
    assert parse_scontrol(text) is None


def test_parse_scontrol_recorded_empty_answer():
    assert stdout("scontrol-o-show-job-empty") == "No jobs in the system\n"
    assert parse_scontrol(stdout("scontrol-o-show-job-empty")) is None


def test_parse_scontrol_every_truncation_of_a_real_line():
    line = stdout("scontrol-o-show-job-failed").rstrip("\n")
    state_at = line.index("JobState=FAILED ") + len("JobState=FAILED ")
    code_at = line.index("ExitCode=3:0 ") + len("ExitCode=3:0")
    for cut in range(len(line) + 1):
        info = parse_scontrol(line[:cut])
        if cut < line.index("JobState=") + len("JobState="):
            assert info is None, cut
            continue
        assert info is not None and info.job_id == JOBS["failed"], cut
        assert info.state is (JobState.FAILED if cut >= state_at - 1 else JobState.UNKNOWN), cut
        assert info.exit_code == (3 if cut >= code_at else None), cut


@pytest.mark.parametrize(("exit_field", "code"), [
    ("ExitCode=3:0", 3), ("ExitCode=0:15", 0), ("ExitCode=127:0", 127), ("ExitCode=", None),
    ("ExitCode=3", None), ("ExitCode=-1:0", None), ("ExitCode=x:y", None), ("", None),
])
def test_parse_scontrol_exit_code(exit_field, code):
    info = parse_scontrol(f"JobId=7 JobState=FAILED Reason=NonZeroExitCode {exit_field} NodeList=vm")
    assert info is not None and info.exit_code == code


def test_parse_scontrol_null_fields_mean_none():
    info = parse_scontrol("JobId=7 JobName=x JobState=PENDING Reason=(null) NodeList=(null)")
    assert info == JobInfo("7", JobState.PENDING, "PENDING", "", None)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_scontrol_never_raises(text):
    info = parse_scontrol(text)
    assert info is None or isinstance(info.state, JobState)


# -- parse_sacct ----------------------------------------------------------------------------------------


def test_sacct_without_slurmdbd():
    result = recorded("sacct-no-slurmdbd")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "Slurm accounting storage is disabled\n"
    for job_id in JOBS.values():
        assert parse_sacct(result.stdout, job_id) is None
        assert parse_sacct(result.stderr, job_id) is None


SACCT = "3|FAILED|3:0|vm\n4|CANCELLED by 1001|0:15|vm\n5|RUNNING|0:0|vm\n7|TIMEOUT|0:15|vm\n"


@pytest.mark.parametrize(("job_id", "expected"), [
    ("3", JobInfo("3", JobState.FAILED, "FAILED", node="vm", exit_code=3, end_reason="FAILED")),
    ("4", JobInfo("4", JobState.CANCELLED, "CANCELLED by 1001", node="vm", exit_code=0,
                  end_reason="CANCELLED")),
    ("5", JobInfo("5", JobState.RUNNING, "RUNNING", node="vm", exit_code=0)),
    ("7", JobInfo("7", JobState.FAILED, "TIMEOUT", node="vm", exit_code=0, end_reason="TIMEOUT")),
    ("1", None), ("", None), ("3.batch", None),
])
def test_parse_sacct(job_id, expected):
    assert parse_sacct(SACCT, job_id) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("", None),
    ("3|FAI", None),  # truncated
    ("3|FAILED|", JobInfo("3", JobState.FAILED, "FAILED", end_reason="FAILED")),
    ("3|FAILED|3:0", JobInfo("3", JobState.FAILED, "FAILED", exit_code=3, end_reason="FAILED")),
    ("3|FAILED|3:0|", JobInfo("3", JobState.FAILED, "FAILED", exit_code=3, end_reason="FAILED")),
    ("3.batch|FAILED|3:0|vm\n3|COMPLETED|0:0|vm", JobInfo("3", JobState.COMPLETED, "COMPLETED", node="vm",
                                                          exit_code=0, end_reason="COMPLETED")),
])
def test_parse_sacct_edges(text, expected):
    assert parse_sacct(text, "3") == expected


# -- how a job ended (JobInfo.end_reason) ---------------------------------------------------------------


@pytest.mark.parametrize(("role", "end", "words"), [
    ("timeout", "TIMEOUT", "time limit reached"),
    ("out_of_memory", "OUT_OF_MEMORY", "out of memory"),
    ("cancelled", "CANCELLED", "cancelled"),
    ("failed", "FAILED", "failed: exit code 3"),
    ("completed", "COMPLETED", "completed"),
    ("refused_memory", "FAILED", "failed: what it asks for can never be met"),  # Reason=BadConstraints
])
def test_how_the_recorded_jobs_ended(role, end, words):
    squeued = parse_squeue(stdout("squeue-mixed"))[JOBS[role]]
    shown = parse_scontrol(scontrol_line(role))
    assert squeued.end_reason == shown.end_reason == end
    assert job_words("slurm", shown) == words


def test_recorded_time_limit_and_memory_kills():
    # The job with --time=00:01:00 (`sleep 600`), killed by slurmctld's time-limit check...
    timeout = stdout("scontrol-o-show-job-timeout")
    assert " JobState=TIMEOUT Reason=TimeLimit " in timeout and " TimeLimit=00:01:00 " in timeout
    assert parse_scontrol(timeout) == JobInfo(JOBS["timeout"], JobState.FAILED, "TIMEOUT", "TimeLimit",
                                              NODE, 0, "TIMEOUT")
    # ... and the one that wrote 256 MiB with --mem=64M, killed by the kernel in its memory cgroup.
    oom = stdout("scontrol-o-show-job-out-of-memory")
    assert " JobState=OUT_OF_MEMORY Reason=OutOfMemory " in oom and " ExitCode=0:125 " in oom
    assert " MinMemoryNode=64M " in oom
    assert parse_scontrol(oom) == JobInfo(JOBS["out_of_memory"], JobState.FAILED, "OUT_OF_MEMORY",
                                          "OutOfMemory", NODE, 0, "OUT_OF_MEMORY")


@pytest.mark.parametrize(("reason", "end"), [
    ("TimeLimit", "TIMEOUT"), ("OutOfMemory", "OUT_OF_MEMORY"), ("NodeDown", "NODE_FAIL"),
    ("NonZeroExitCode", "FAILED"), ("DeadLine", "DEADLINE"), ("None", ""), ("Prolog", ""),
])
def test_a_completing_job_ends_as_its_reason_says(reason, end):
    # Hand-written: squeue prints COMPLETING (its processes being cleaned up) whatever the end, and the
    # reason slurmctld set when it ended the job (the recorded TIMEOUT job's TimeLimit).
    info = parse_squeue(f"8|COMPLETING|{reason}|vm|x\n")["8"]
    assert info.state is JobState.COMPLETED  # as before: COMPLETING counts as ended
    assert info.end_reason == end
    line = scontrol_line("timeout").replace("JobState=TIMEOUT", "JobState=COMPLETING").replace(
        "Reason=TimeLimit", f"Reason={reason}")
    assert parse_scontrol(line).end_reason == end


#: sacct -n -P -X -o JobID,State,ExitCode,NodeList as SchedMD's sacct page documents the states
#: (no slurmdbd here to record it): hand-written.
SACCT_ENDED = ("5|OUT_OF_MEMORY|0:125|vm\n8|TIMEOUT|0:0|vm\n9|NODE_FAIL|0:0|vm\n10|PREEMPTED|0:0|vm\n"
               "11|CANCELLED by 1001|0:0|vm\n12|DEADLINE|0:0|vm\n13|BOOT_FAIL|0:0|vm\n14|REQUEUED|0:0|vm\n")


@pytest.mark.parametrize(("job_id", "end", "words"), [
    ("5", "OUT_OF_MEMORY", "out of memory"), ("8", "TIMEOUT", "time limit reached"),
    ("9", "NODE_FAIL", "node failure"), ("10", "PREEMPTED", "preempted"), ("11", "CANCELLED", "cancelled"),
    ("12", "DEADLINE", "deadline reached"), ("13", "LAUNCH_FAILED", "could not be started"),
    ("14", "", ""),  # requeued: pending again, not ended
])
def test_sacct_states_say_how_jobs_ended(job_id, end, words):
    info = parse_sacct(SACCT_ENDED, job_id)
    assert info is not None and info.end_reason == end
    assert job_words("slurm", info) == words


def test_every_slurm_state_word_either_ended_or_not():
    for word, state in _STATES.items():
        end = slurm_end_reason(word)
        if word == "COMPLETING":
            assert end == ""  # its reason says how (test_a_completing_job_ends_as_its_reason_says)
        elif state.finished:
            assert end, word
        else:
            assert end == "", word


async def test_a_purged_job_ends_as_sacct_says():
    ids = [JOBS["out_of_memory"]]
    executor = RecordedExecutor({
        squeue_argv(ids): recorded("squeue-unknown-id"),
        SCONTROL_ALL: recorded("scontrol-o-show-job-empty"),
        sacct_argv(ids): CommandResult(sacct_argv(ids), 0,
                                       f"{JOBS['out_of_memory']}|OUT_OF_MEMORY|0:125|vm\n", ""),
    })
    infos = await SlurmScheduler().query(executor, refs("out_of_memory"))
    assert (infos[JOBS["out_of_memory"]].state, infos[JOBS["out_of_memory"]].end_reason) == (
        JobState.FAILED, "OUT_OF_MEMORY")


async def test_a_job_missing_from_squeue_ends_as_scontrol_says():
    ids = [JOBS["timeout"], JOBS["out_of_memory"]]
    executor = RecordedExecutor({
        squeue_argv(ids): squeue_listing(ids, missing=ids),
        SCONTROL_ALL: recorded("scontrol-o-show-job"),
    })
    infos = await SlurmScheduler().query(executor, refs("timeout", "out_of_memory"))
    assert [infos[i].end_reason for i in ids] == ["TIMEOUT", "OUT_OF_MEMORY"]


async def test_a_gone_job_says_it_ended_not_how():
    ids = [UNKNOWN_ID]
    executor = RecordedExecutor({
        squeue_argv(ids): recorded("squeue-unknown-id"),
        SCONTROL_ALL: recorded("scontrol-o-show-job"),
        sacct_argv(ids): recorded("sacct-no-slurmdbd"),
    })
    info = (await SlurmScheduler().query(executor, refs(UNKNOWN_ID)))[UNKNOWN_ID]
    assert (info.raw_state, info.end_reason) == ("GONE", "")
    assert job_words("slurm", info) == "ended (no longer known to Slurm)"


# -- parse_private_data and shows_other_users_jobs ------------------------------------------------------


def test_private_data_of_the_recorded_config():
    config = stdout("scontrol-show-config")
    assert "\nPrivateData             = none\n" in config
    assert "\nAccountingStorageType   = accounting_storage/none\n" in config
    assert parse_private_data(config) == set()


@pytest.mark.parametrize(("value", "words"), [
    ("jobs", {"jobs"}), ("accounts,jobs,usage", {"accounts", "jobs", "usage"}), ("(null)", set()),
    ("", set()), ("NONE", set()),
])
def test_private_data_words(value, words):
    config = stdout("scontrol-show-config").replace("PrivateData             = none",
                                                    f"PrivateData             = {value}")
    assert parse_private_data(config) == words


async def test_shows_other_users_jobs_with_the_recorded_config():
    config = recorded("scontrol-show-config")
    executor = RecordedExecutor({("scontrol", "show", "config"): config})
    executor.prefix = ("sudo", "-u", "pwtestuser", "--")  # as the spawner runs it for a user
    assert await SlurmScheduler().shows_other_users_jobs(executor) is True  # PrivateData = none
    hidden = CommandResult(config.argv, 0, config.stdout.replace(
        "PrivateData             = none\n", "PrivateData             = jobs,usage\n"), "")
    assert hidden.stdout != config.stdout
    executor.answers[("scontrol", "show", "config")] = hidden
    assert await SlurmScheduler().shows_other_users_jobs(executor) is False


# -- submit_error_message and submit --------------------------------------------------------------------


def test_submit_error_invalid_partition():
    err = stderr("sbatch-invalid-partition")
    assert err == ("sbatch: error: invalid partition specified: nosuchpartition\n"
                   "sbatch: error: Batch job submission failed: Invalid partition name specified\n")
    message = submit_error_message(err)
    assert "Invalid partition name specified" in message
    assert "sbatch:" not in message and "Batch job submission failed" not in message


def test_submit_error_too_much_memory_says_memory():
    err = stderr("sbatch-too-much-memory")
    assert err == ("sbatch: error: Memory specification can not be satisfied\n"
                   "sbatch: error: Batch job submission failed: "
                   "Requested node configuration is not available\n")
    # The line the user can act on is the first: "Requested node configuration..." alone does not say
    # that it is the memory they asked for.
    assert "Memory specification can not be satisfied" in submit_error_message(err)


def test_submit_error_invalid_gres_has_no_batch_job_line():
    err = stderr("sbatch-invalid-gres")
    assert err == "sbatch: error: Invalid generic resource (gres) specification\n"
    assert submit_error_message(err) == "Invalid generic resource (gres) specification"


@pytest.mark.parametrize("err", ["", "\n", "   \n"])
def test_submit_error_without_words(err):
    assert submit_error_message(err) == "sbatch failed without saying why"


def _submit_executor(sbatch: CommandResult) -> RecordedExecutor:
    return RecordedExecutor({
        ("mkdir", "-p", "-m", "0700", "--", "/jobs/x"): CommandResult(("mkdir",), 0, "", ""),
        ("sbatch", "--parsable"): sbatch,
    })


async def test_submit_returns_the_recorded_job_id():
    result = recorded("sbatch-parsable")
    assert result.stdout == f"{JOBS['running']}\n"
    executor = _submit_executor(result)
    job_id = await SlurmScheduler().submit(executor, "#!/bin/sh\n", name="x", job_dir="/jobs/x")
    assert job_id == JOBS["running"]
    assert executor.calls[-1] == ("sbatch", "--parsable")
    federated = CommandResult(result.argv, 0, f"{JOBS['running']};pwtest\n", "")
    assert await SlurmScheduler().submit(_submit_executor(federated), "#!/bin/sh\n", name="x",
                                         job_dir="/jobs/x") == JOBS["running"]


async def test_submit_refused():
    executor = _submit_executor(recorded("sbatch-invalid-partition"))
    with pytest.raises(SubmitError) as caught:
        await SlurmScheduler().submit(executor, "#!/bin/sh\n", name="x", job_dir="/jobs/x")
    assert caught.value.message.startswith("Slurm refused the job: ")
    assert "Invalid partition name specified" in caught.value.message


async def test_submit_over_the_partition_is_accepted_by_slurm():
    # --cpus-per-task=64 on a 2-CPU partition: sbatch took it (EnforcePartLimits=NO), it pends for ever.
    result = recorded("sbatch-too-many-cpus")
    assert (result.returncode, result.stderr) == (0, "")
    executor = _submit_executor(result)
    job_id = await SlurmScheduler().submit(executor, "#!/bin/sh\n", name="x", job_dir="/jobs/x")
    assert job_id == JOBS["pending_too_many_cpus"]
    assert parse_squeue(stdout("squeue-mixed"))[job_id].reason == "PartitionConfig"


# -- query: the batching --------------------------------------------------------------------------------


async def test_query_asks_squeue_once_for_every_job():
    roles = list(JOBS)
    ids = [JOBS[r] for r in roles]
    executor = RecordedExecutor({squeue_argv(ids): recorded("squeue-mixed")})
    infos = await SlurmScheduler().query(executor, refs(*roles))
    assert executor.calls == [squeue_argv(ids)]
    assert infos == parse_squeue(stdout("squeue-mixed"))
    assert list(infos) == ids  # in the order asked
    assert infos[JOBS["pending_held"]].reason == "JobHeldUser"


async def test_query_no_jobs_runs_nothing():
    executor = RecordedExecutor({})
    assert await SlurmScheduler().query(executor, []) == {}
    assert executor.calls == []


async def test_job_missing_from_squeue_is_confirmed_by_scontrol():
    ids = [JOBS["running"], JOBS["failed"], JOBS["pending_resources"]]
    executor = RecordedExecutor({
        squeue_argv(ids): squeue_listing(ids, missing=[JOBS["failed"]]),
        SCONTROL_ALL: recorded("scontrol-o-show-job"),
    })
    infos = await SlurmScheduler().query(executor, refs("running", "failed", "pending_resources"))
    assert executor.calls == [squeue_argv(ids), SCONTROL_ALL]  # no sacct: scontrol still holds it
    assert infos[JOBS["failed"]] == JobInfo(JOBS["failed"], JobState.FAILED, "FAILED", "NonZeroExitCode",
                                            NODE, 3, "FAILED")
    assert infos[JOBS["running"]].state is JobState.RUNNING
    assert infos[JOBS["pending_resources"]].reason == "Resources"


async def test_running_job_missing_from_squeue_is_still_running():
    # scontrol has job 5 RUNNING; job 6, named "rec JobId=5 x", COMPLETED: 5 must stay RUNNING.
    ids = [JOBS["running"]]
    executor = RecordedExecutor({
        squeue_argv(ids): squeue_listing(ids, missing=ids),
        SCONTROL_ALL: recorded("scontrol-o-show-job"),
    })
    infos = await SlurmScheduler().query(executor, refs("running"))
    assert executor.calls == [squeue_argv(ids), SCONTROL_ALL]
    assert infos[JOBS["running"]] == JobInfo(JOBS["running"], JobState.RUNNING, "RUNNING", "", NODE, 0)


async def test_every_job_missing_from_squeue_is_confirmed_in_one_scontrol_call():
    roles = ["cancelled", "timeout", "pending_dependency"]
    ids = [JOBS[r] for r in roles]
    executor = RecordedExecutor({
        squeue_argv(ids): squeue_listing(ids, missing=ids),
        SCONTROL_ALL: recorded("scontrol-o-show-job"),
    })
    infos = await SlurmScheduler().query(executor, refs(*roles))
    assert executor.calls == [squeue_argv(ids), SCONTROL_ALL]
    assert [(infos[i].state, infos[i].raw_state, infos[i].reason) for i in ids] == [
        (JobState.CANCELLED, "CANCELLED", ""), (JobState.FAILED, "TIMEOUT", "TimeLimit"),
        (JobState.PENDING, "PENDING", "Dependency")]


async def test_unknown_job_goes_through_scontrol_then_sacct_then_is_gone():
    ids = [UNKNOWN_ID]
    executor = RecordedExecutor({
        squeue_argv(ids): recorded("squeue-unknown-id"),  # rc 1, "Invalid job id specified"
        SCONTROL_ALL: recorded("scontrol-o-show-job"),
        sacct_argv(ids): recorded("sacct-no-slurmdbd"),  # rc 1, accounting storage is disabled
    })
    infos = await SlurmScheduler().query(executor, refs(UNKNOWN_ID))
    assert executor.calls == [squeue_argv(ids), SCONTROL_ALL, sacct_argv(ids)]
    assert infos == {UNKNOWN_ID: JobInfo(UNKNOWN_ID, JobState.COMPLETED, "GONE", "no longer known to Slurm")}


async def test_known_and_unknown_ids_only_the_unknown_one_is_looked_up():
    ids = [JOBS["running"], UNKNOWN_ID]
    executor = RecordedExecutor({
        squeue_argv(ids): recorded("squeue-known-and-unknown"),
        SCONTROL_ALL: recorded("scontrol-o-show-job"),
        sacct_argv([UNKNOWN_ID]): recorded("sacct-no-slurmdbd"),
    })
    infos = await SlurmScheduler().query(executor, refs("running", UNKNOWN_ID))
    assert executor.calls == [squeue_argv(ids), SCONTROL_ALL, sacct_argv([UNKNOWN_ID])]
    assert infos[JOBS["running"]].state is JobState.RUNNING
    assert infos[UNKNOWN_ID].raw_state == "GONE"


async def test_no_jobs_in_the_system_sends_everything_to_sacct():
    ids = [UNKNOWN_ID]
    executor = RecordedExecutor({
        squeue_argv(ids): recorded("squeue-unknown-id"),
        SCONTROL_ALL: recorded("scontrol-o-show-job-empty"),
        sacct_argv(ids): recorded("sacct-no-slurmdbd"),
    })
    infos = await SlurmScheduler().query(executor, refs(UNKNOWN_ID))
    assert executor.calls == [squeue_argv(ids), SCONTROL_ALL, sacct_argv(ids)]
    assert infos[UNKNOWN_ID].state is JobState.COMPLETED


async def test_sacct_answer_is_used_for_purged_jobs():
    ids = [JOBS["failed"]]
    executor = RecordedExecutor({
        squeue_argv(ids): recorded("squeue-unknown-id"),
        SCONTROL_ALL: recorded("scontrol-o-show-job-empty"),
        sacct_argv(ids): CommandResult(sacct_argv(ids), 0, f"{JOBS['failed']}|FAILED|3:0|{NODE}\n", ""),
    })
    infos = await SlurmScheduler().query(executor, refs("failed"))
    assert infos[JOBS["failed"]] == JobInfo(JOBS["failed"], JobState.FAILED, "FAILED", node=NODE, exit_code=3,
                                            end_reason="FAILED")


async def test_failing_squeue_makes_every_job_unknown():
    roles = list(JOBS)
    ids = [JOBS[r] for r in roles]
    down = recorded("squeue-controller-down")
    assert down.returncode == 1
    assert down.stderr == "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
    executor = RecordedExecutor({squeue_argv(ids): down})
    infos = await SlurmScheduler().query(executor, refs(*roles))
    assert executor.calls == [squeue_argv(ids)]  # nothing is confirmed gone on a failed squeue
    assert {info.state for info in infos.values()} == {JobState.UNKNOWN}
    assert set(infos) == set(ids)
    assert all("Unable to contact slurm controller" in info.reason for info in infos.values())


async def test_unreadable_scontrol_answer_confirms_nothing():
    ids = [JOBS["failed"], JOBS["running"]]
    whole = stdout("scontrol-o-show-job")
    last = f"JobId={JOBS['pending_too_many_nodes']} JobNa"
    cut = whole[: whole.index(last) + len(last)]
    executor = RecordedExecutor({
        squeue_argv(ids): squeue_listing(ids, missing=[JOBS["failed"]]),
        SCONTROL_ALL: CommandResult(SCONTROL_ALL, 0, cut, ""),
    })
    infos = await SlurmScheduler().query(executor, refs("failed", "running"))
    assert executor.calls == [squeue_argv(ids), SCONTROL_ALL]  # no sacct, nothing declared gone
    assert infos[JOBS["failed"]].state is JobState.UNKNOWN
    assert "unreadable scontrol output" in infos[JOBS["failed"]].reason
    assert infos[JOBS["running"]].state is JobState.RUNNING


async def test_failing_scontrol_makes_the_missing_jobs_unknown():
    ids = [JOBS["failed"]]
    executor = RecordedExecutor({
        squeue_argv(ids): recorded("squeue-unknown-id"),
        SCONTROL_ALL: CommandResult(SCONTROL_ALL, 1, "", recorded("squeue-controller-down").stderr),
    })
    infos = await SlurmScheduler().query(executor, refs("failed"))
    assert executor.calls == [squeue_argv(ids), SCONTROL_ALL]
    assert infos[JOBS["failed"]].state is JobState.UNKNOWN


# -- the status cache keeps how a job ended ----------------------------------------------------------------


async def test_the_cache_keeps_how_a_job_ended_once_slurm_has_forgotten_it():
    job = refs("timeout")[0]
    ids = [job.job_id]
    listed = {squeue_argv(ids): squeue_listing(ids)}
    # Past MinJobAge: squeue and scontrol no longer know the job, and there is no slurmdbd.
    forgotten = {squeue_argv(ids): recorded("squeue-unknown-id"),
                 SCONTROL_ALL: recorded("scontrol-o-show-job-empty"),
                 sacct_argv(ids): recorded("sacct-no-slurmdbd")}
    executor = RecordedExecutor(listed)
    cache = StatusCache(SlurmScheduler(), executor, refresh_interval=30, window=0)
    ended = await cache.status(job, max_age=0)
    assert (ended.state, ended.raw_state, ended.end_reason) == (JobState.FAILED, "TIMEOUT", "TIMEOUT")
    executor.answers = forgotten
    assert (await SlurmScheduler().query(executor, [job]))[job.job_id].raw_state == "GONE"  # what Slurm says
    assert await cache.status(job, max_age=0) == ended  # what the cache keeps
    executor.answers = {squeue_argv(ids): recorded("squeue-controller-down")}
    assert (await cache.status(job, max_age=0)).state is JobState.UNKNOWN  # a failed query says so...
    executor.answers = forgotten
    assert await cache.status(job, max_age=0) == ended  # ... and does not lose how it ended
    assert cache.queries == 4


async def test_the_cache_forgets_how_a_job_ended_when_it_runs_again():
    job = refs("timeout")[0]
    ids = [job.job_id]
    executor = RecordedExecutor({squeue_argv(ids): squeue_listing(ids)})
    cache = StatusCache(SlurmScheduler(), executor, refresh_interval=30, window=0)
    assert (await cache.status(job, max_age=0)).end_reason == "TIMEOUT"
    requeued = CommandResult(squeue_argv(ids), 0, f"{job.job_id}|PENDING|BeginTime||rec-timeout\n", "")
    executor.answers = {squeue_argv(ids): requeued}  # scontrol requeue: the same id runs again
    assert (await cache.status(job, max_age=0)).state is JobState.PENDING
    executor.answers = {squeue_argv(ids): recorded("squeue-unknown-id"),
                        SCONTROL_ALL: recorded("scontrol-o-show-job-empty"),
                        sacct_argv(ids): recorded("sacct-no-slurmdbd")}
    gone = await cache.status(job, max_age=0)
    assert (gone.raw_state, gone.end_reason) == ("GONE", "")


# -- find and cancel -------------------------------------------------------------------------------------


FIND_ARGV = ("squeue", "-h", "--me", "-n", "rec-sleeper", "-o", SQUEUE_FORMAT)


async def test_find_recorded():
    # squeue --me without -t lists only unfinished jobs: the cancelled job of the same name is not there.
    line = stdout("squeue-me-name")
    assert line.startswith(f"{JOBS['running']}|RUNNING|None|{NODE}|") and line.endswith("|rec-sleeper\n")
    executor = RecordedExecutor({FIND_ARGV: recorded("squeue-me-name")})
    assert await SlurmScheduler().find(executor, "rec-sleeper", "/jobs/x") == [JOBS["running"]]
    assert executor.calls == [FIND_ARGV]


async def test_find_leaves_out_finished_jobs():
    lines = [x for x in stdout("squeue-mixed").splitlines(keepends=True)
             if x.rstrip("\n").endswith("|rec-sleeper")]
    assert len(lines) == 2
    executor = RecordedExecutor({FIND_ARGV: CommandResult(FIND_ARGV, 0, "".join(lines), "")})
    assert await SlurmScheduler().find(executor, "rec-sleeper", "/jobs/x") == [JOBS["running"]]


async def test_find_fails_loudly():
    down = recorded("squeue-controller-down")
    executor = RecordedExecutor({FIND_ARGV: CommandResult(FIND_ARGV, 1, "", down.stderr)})
    with pytest.raises(SchedulerError, match="Unable to contact slurm controller"):
        await SlurmScheduler().find(executor, "rec-sleeper", "/jobs/x")


@pytest.mark.parametrize(("name", "role"), [
    ("scancel", "cancelled"), ("scancel-finished", "completed"), ("scancel-unknown", UNKNOWN_ID)])
async def test_cancel_recorded(name, role):
    result = recorded(name)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")  # scancel says nothing
    (job,) = refs(role)
    executor = RecordedExecutor({("scancel", job.job_id): result})
    await SlurmScheduler().cancel(executor, job)
    assert executor.calls == [("scancel", job.job_id)]


async def test_cancel_errors():
    (job,) = refs(UNKNOWN_ID)
    argv = ("scancel", UNKNOWN_ID)
    gone = CommandResult(argv, 1, "", f"scancel: error: Kill job error on job id {UNKNOWN_ID}: "
                                      "Invalid job id specified\n")
    await SlurmScheduler().cancel(RecordedExecutor({argv: gone}), job)
    down = CommandResult(argv, 1, "", recorded("squeue-controller-down").stderr)
    with pytest.raises(SchedulerError, match="could not cancel job"):
        await SlurmScheduler().cancel(RecordedExecutor({argv: down}), job)


# -- the estimated start of a queued job (squeue's %S) -------------------------------------------------


def test_slurms_year_ahead_is_no_estimate():
    # Recorded: a job waiting for Resources held by a job without a time limit.
    line = next(x for x in stdout("squeue-mixed").splitlines()
                if x.startswith(f"{JOBS['pending_resources']}|"))
    shown = parse_slurm_time(line.split("|")[4])
    assert shown is not None and shown - RECORDED_AT > NO_ESTIMATE_AFTER
    assert parse_squeue(line, now=RECORDED_AT)[JOBS["pending_resources"]].estimated_start is None


def test_a_pending_jobs_estimated_start_is_read_in_local_time():
    infos = parse_squeue("41|PENDING|Resources|(null)|2026-12-02T14:05:00|pw-alice\n"
                         "42|PENDING|Priority|(null)|N/A|pw-bob\n"
                         "43|RUNNING|None|node1|2026-12-02T09:00:00|pw-carol\n",
                         now=datetime(2026, 12, 2, 9, 30).astimezone())
    start = infos["41"].estimated_start
    assert start is not None and start.tzinfo is not None
    assert start.astimezone().replace(tzinfo=None) == datetime(2026, 12, 2, 14, 5)
    # No estimate yet, and a running job's start is not an estimate.
    assert infos["42"].estimated_start is None and infos["43"].estimated_start is None


@pytest.mark.parametrize("text", ["N/A", "Unknown", "None", "", "14:05", "2026-13-40T99:00:00",
                                  "Tomorr 14:05", "\x00" * 50, "9" * 400])
def test_a_start_that_is_no_time_is_no_estimate(text: str):
    assert parse_slurm_time(text) is None
    assert parse_squeue(f"7|PENDING|Priority|(null)|{text}|pw-x")["7"].estimated_start is None
