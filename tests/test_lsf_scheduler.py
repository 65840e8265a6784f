"""The LSF module on IBM's documented output formats (tests/data/lsf, written by hand: LSF cannot be
installed here; its README says which IBM page documents each format and which public thread quotes
real output): STAT words, bjobs -o ... -json, bhist -l, bsub's and bkill's messages, bparams -a, the
#BSUB directives of every shipped profile, and the query, submit, find and cancel commands through a
stub executor, hostile and huge output included."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.fake_commands import run

from pw_spawner.apps import jupyter_launch
from pw_spawner.options import Selection
from pw_spawner.profiles import build_profiles, profile_from_dict
from pw_spawner.remote.executor import CommandResult, ExecutorError, LocalExecutor
from pw_spawner.schedulers import (
    JobRef,
    SchedulerError,
    SettingsError,
    SubmitError,
    get_scheduler,
    scheduler_class,
)
from pw_spawner.schedulers.cache import StatusCache
from pw_spawner.schedulers.lsf import (
    _STATES,
    BJOBS_FIELDS,
    FIND_FIELDS,
    MAX_BJOBS_JSON,
    LSFScheduler,
    LSFSettings,
    bjobs_records,
    first_host,
    lsf_state,
    parse_bhist,
    parse_bjobs_json,
    parse_secure_job_info_level,
    run_limit,
    submit_error_message,
)
from pw_spawner.schedulers.reasons import job_words
from pw_spawner.scripts import ScriptRequest, render_script
from pw_spawner.status import JobState

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data" / "lsf"
SHIPPED = {profile.slug: profile for profile in build_profiles(directory=REPO / "profiles")}


def recorded(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture(autouse=True)
def no_recent_submits():
    """Each test starts with no job this process has just submitted (they would be unknown)."""
    LSFScheduler._submitted_at.clear()
    yield
    LSFScheduler._submitted_at.clear()


def profile(**job):
    return profile_from_dict({"slug": "p", "display_name": "P", "job": job})


# ---- the part and its registration -------------------------------------------------------------


def test_lsf_is_registered_from_its_module_alone():
    cls = scheduler_class("lsf")
    assert cls is LSFScheduler and isinstance(get_scheduler("lsf"), LSFScheduler)
    assert (cls.directive_prefix, cls.job_id_variable, cls.on_resources, cls.beside_the_hub) == \
        ("#BSUB", "LSB_JOBID", True, False)
    assert cls.default_bind_ip() == "0.0.0.0"
    assert "LSF_ENVDIR" in cls.client_environment


# ---- states -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("stat", "state"), [
    ("PEND", JobState.PENDING), ("PSUSP", JobState.PENDING), ("WAIT", JobState.PENDING),
    ("USUSP", JobState.PENDING), ("SSUSP", JobState.PENDING), ("PROV", JobState.STARTING),
    ("RUN", JobState.RUNNING), ("DONE", JobState.COMPLETED), ("PDONE", JobState.COMPLETED),
    ("EXIT", JobState.FAILED), ("PERR", JobState.FAILED), ("ZOMBI", JobState.CANCELLED),
    ("UNKWN", JobState.UNKNOWN), ("run", JobState.UNKNOWN), ("", JobState.UNKNOWN),
])
def test_stat_words(stat, state):
    assert lsf_state(stat) is state


def test_every_documented_stat_word_is_mapped():
    documented = {"PEND", "PROV", "PSUSP", "RUN", "USUSP", "SSUSP", "DONE", "EXIT", "UNKWN", "WAIT", "ZOMBI"}
    assert documented <= set(_STATES)


@given(st.text(max_size=12))
def test_any_stat_word_has_an_answer(stat):
    assert isinstance(lsf_state(stat), JobState)


# ---- bjobs -json --------------------------------------------------------------------------------


def test_running_job_and_its_first_host():
    listed, said = parse_bjobs_json(recorded("bjobs-json-running.json"))
    assert said == {}
    job = listed["1201"]
    assert (job.state, job.raw_state, job.node, job.reason, job.exit_code) == \
        (JobState.RUNNING, "RUN", "node017", "", None)


def test_pending_jobs_say_why():
    listed, _ = parse_bjobs_json(recorded("bjobs-json-pending.json"))
    assert {i: (j.state, j.raw_state, j.reason, j.node) for i, j in listed.items()} == {
        "1202": (JobState.PENDING, "PEND", "New job is waiting for scheduling", None),
        "1203": (JobState.PENDING, "PEND",
                 "Job's requirements for reserving resource (mem) not satisfied: 12 hosts", None),
        "1204": (JobState.PENDING, "PSUSP", "The job was suspended by user while pending", None),
        "1205": (JobState.PENDING, "PEND", "The user has reached his/her job slot limit", None),
    }


def test_done_and_exit_with_their_codes():
    done, _ = parse_bjobs_json(recorded("bjobs-json-done.json"))
    job = done["1206"]
    assert (job.state, job.exit_code, job.node) == (JobState.COMPLETED, 0, "node018")
    ended, _ = parse_bjobs_json(recorded("bjobs-json-exit.json"))
    job = ended["1207"]
    assert (job.state, job.raw_state, job.exit_code) == (JobState.FAILED, "EXIT", 3)
    assert (ended["1208"].exit_code, ended["1208"].node) == (130, "gpu003")


def test_not_found_records_with_and_without_a_jobid():
    listed, said = parse_bjobs_json(recorded("bjobs-json-not-found.json"))
    assert listed == {} and said == {"999999": "not found", "999998": "not found"}


def test_a_mixed_answer():
    listed, said = parse_bjobs_json(recorded("bjobs-json-mixed.json"))
    assert {i: (j.state, j.reason) for i, j in listed.items()} == {
        "1201": (JobState.RUNNING, ""),
        "1202": (JobState.PENDING, "New job is waiting for scheduling"),
        "1206": (JobState.COMPLETED, ""),
        "1207": (JobState.FAILED, ""),
        "1210": (JobState.PENDING, "suspended by its owner or an administrator"),
        "1211": (JobState.UNKNOWN, "LSF has lost contact with the job's host"),
        "1212": (JobState.CANCELLED, "killed while its host was unreachable"),
        "1213": (JobState.PENDING, "waiting for its turn in a job chunk"),
    }
    assert said == {"999999": "not found"}


def test_lines_lsf_prints_while_busy_come_before_the_json():
    text = ("LSF is processing your request. Please wait ...\n"
            "Batch system concurrent query limit exceeded. LSF is retrying. Please wait...\n"
            + recorded("bjobs-json-running.json"))
    assert parse_bjobs_json(text)[0]["1201"].state is JobState.RUNNING


@pytest.mark.parametrize("text", [
    "", "\n\n", "LSF is down. Please wait...", "No unfinished job found",
    '{"COMMAND":"bjobs","JOBS":1,"RECORDS":[{"JOBID":"1","STAT":"RUN"',  # cut off
    '{"COMMAND":"bjobs","JOBS":1}', '{"COMMAND":"bhosts","RECORDS":[]}', '["RECORDS"]',
    '{"COMMAND":"bjobs","RECORDS":[]}\n{"COMMAND":"bjobs","RECORDS":[]}',  # a second document
    '{"COMMAND":"bjobs","RECORDS":[]} trailing',
])
def test_unreadable_bjobs_output_is_an_error_not_an_empty_answer(text):
    with pytest.raises(ValueError):
        parse_bjobs_json(text)


@pytest.mark.parametrize(("exec_host", "host"), [
    ("node017", "node017"), ("4*node017", "node017"), ("8*gpu003:8*gpu004", "gpu003"),
    ("node017:node017:node017", "node017"), ("node-1.cluster.example.org", "node-1.cluster.example.org"),
    ("", None), ("-", None), ("$(reboot)", None), ("'node1'", None), ("*node1", None),
])
def test_first_host(exec_host, host):
    assert first_host(exec_host) == host


def _document(*records: dict) -> str:
    return json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": list(records)}, indent=2)


def test_fields_are_checked_and_capped():
    text = _document(
        {"JOBID": "1", "STAT": "PEND", "PEND_REASON": "waiting\n\x1b[31mfor\u2028you " + "x" * 10_000,
         "EXIT_CODE": "-", "EXEC_HOST": "-"},
        {"JOBID": "2", "STAT": "EXIT", "EXIT_CODE": "3; rm -rf /", "EXEC_HOST": "node1 node2"},
        {"JOBID": "3", "STAT": "RUNNING NOW", "EXEC_HOST": "node1"},
        {"JOBID": "4", "STAT": ["RUN"], "EXIT_CODE": {"x": 1}},
        {"JOBID": "../5", "STAT": "RUN"}, {"JOBID": 6, "STAT": "RUN"}, {"STAT": "RUN"}, "not a record",
    )
    listed, said = parse_bjobs_json(text)
    assert set(listed) == {"1", "2", "3", "4", "6"} and said == {}
    reason = listed["1"].reason
    assert len(reason) <= 300 and "\n" not in reason and "\x1b" not in reason
    assert listed["1"].reason.startswith("waiting [31mfor you") and listed["1"].exit_code is None
    assert (listed["2"].exit_code, listed["2"].node) == (None, "node1")
    assert listed["3"].state is JobState.UNKNOWN and listed["4"].state is JobState.UNKNOWN
    assert listed["6"].state is JobState.RUNNING


def test_a_job_name_cannot_speak_for_another_job():
    """The query leaves job names out; should a name reach the answer anyway (a site's format, an
    LSF that does not escape it), it is only text of its own record's."""
    escaped = _document(
        {"JOBID": "6", "STAT": "RUN", "EXEC_HOST": "node1",
         "JOB_NAME": 'x","STAT":"DONE"},{"JOBID":"5","STAT":"DONE'},
        {"JOBID": "7", "STAT": "PEND", "JOB_NAME": "Job <5> is not found"},
    )
    listed, said = parse_bjobs_json(escaped)
    assert set(listed) == {"6", "7"} and said == {}
    assert listed["6"].state is JobState.RUNNING
    # Unescaped, the same name would repeat keys of job 6's record: the first of each counts, and
    # an ERROR it adds names job 5 only in its text, which is not job 6's id.
    unescaped = ('{"COMMAND":"bjobs","JOBS":1,"RECORDS":[{"JOBID":"6","STAT":"RUN","EXIT_CODE":"",'
                 '"EXEC_HOST":"node1","JOB_NAME":"x","STAT":"DONE","JOBID":"5"}]}')
    listed, said = parse_bjobs_json(unescaped)
    assert set(listed) == {"6"} and listed["6"].state is JobState.RUNNING
    injected = ('{"COMMAND":"bjobs","RECORDS":[{"JOBID":"6","STAT":"RUN","JOB_NAME":"x",'
                '"ERROR":"Job <5> is not found"}]}')
    listed, said = parse_bjobs_json(injected)
    assert listed == {} and "5" not in said and said["6"] == "Job <5> is not found"


def test_a_job_listed_twice_differently_is_unknown():
    text = _document({"JOBID": "1", "STAT": "RUN"}, {"JOBID": "1", "STAT": "DONE"},
                     {"JOBID": "2", "STAT": "PEND"}, {"JOBID": "2", "STAT": "PEND"})
    listed, _ = parse_bjobs_json(text)
    assert listed["1"].state is JobState.UNKNOWN and listed["2"].state is JobState.PENDING


def test_deep_nesting_is_refused_before_parsing():
    bomb = '{"COMMAND":"bjobs","RECORDS":' + "[" * 200_000 + "]" * 200_000 + "}"
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_bjobs_json(bomb)
    # And the parser is still whole afterwards.
    assert parse_bjobs_json(recorded("bjobs-json-running.json"))[0]["1201"].state is JobState.RUNNING


def test_huge_output():
    many = _document(*({"JOBID": str(100_000 + i), "STAT": "RUN", "EXIT_CODE": "", "EXEC_HOST": "node1",
                        "PEND_REASON": ""} for i in range(10_000)))
    started = time.monotonic()
    assert len(parse_bjobs_json(many)[0]) == 10_000
    assert time.monotonic() - started < 5
    with pytest.raises(ValueError, match="more than"):
        bjobs_records('{"COMMAND":"bjobs","RECORDS":["' + "x" * MAX_BJOBS_JSON + '"]}')


# ---- bhist -l -----------------------------------------------------------------------------------


def test_bhist_done_exit_and_killed():
    done = parse_bhist(recorded("bhist-l-done.txt"), "1206")
    assert (done.state, done.raw_state, done.exit_code) == (JobState.COMPLETED, "DONE", 0)
    failed = parse_bhist(recorded("bhist-l-exit.txt"), "1207")
    assert (failed.state, failed.exit_code) == (JobState.FAILED, 3)
    killed = parse_bhist(recorded("bhist-l-killed.txt"), "1208")
    assert (killed.state, killed.exit_code, killed.reason) == (JobState.CANCELLED, 130, "killed")


def test_bhist_of_a_job_not_ended_is_unknown():
    assert parse_bhist(recorded("bhist-l-pending.txt"), "1216").state is JobState.UNKNOWN


def test_bhist_without_the_job_is_gone():
    gone = parse_bhist(recorded("bhist-no-matching.txt"), "999999")
    assert (gone.state, gone.raw_state) == (JobState.COMPLETED, "GONE")


def test_bhist_of_another_job_or_garbage_is_unknown():
    assert parse_bhist(recorded("bhist-l-done.txt"), "1207").state is JobState.UNKNOWN
    for text in ("", "bhist: cannot open lsb.events", "Done successfully.\nExited with exit code 0"):
        assert parse_bhist(text, "1206").state is JobState.UNKNOWN


def test_a_jobs_own_command_cannot_end_it_or_another():
    """Its header runs on indented, so text in the job's command never starts an event line."""
    info = parse_bhist(recorded("bhist-l-hostile-command.txt"), "1217")
    assert info.state is JobState.UNKNOWN
    assert parse_bhist(recorded("bhist-l-hostile-command.txt"), "1206").state is JobState.UNKNOWN


def test_a_requeued_job_is_not_ended():
    text = recorded("bhist-l-exit.txt").replace(
        "Mon Oct 21 10:40:09: Completed <exit>;",
        "Mon Oct 21 10:40:09: Completed <exit>;\nMon Oct 21 10:40:10: Pending: Job has been requeued;")
    assert parse_bhist(text, "1207").state is JobState.UNKNOWN


def test_bhist_with_the_year_and_unwrapped_lines():
    text = ("Job <1206>, Job Name <pw-a>, User <alice>, Project <default>, Command <x>\n"
            "Mon Oct 21 10:39:41 2024: Submitted from host <login1>, to Queue <short>;\n"
            "Mon Oct 21 14:39:40 2024: Exited with exit code 2. The CPU time used is 3.2 seconds;\n")
    assert parse_bhist(text, "1206").exit_code == 2


# ---- how a job ended (JobInfo.end_reason) ---------------------------------------------------------


def test_bhist_end_reasons_of_the_documented_logs():
    assert parse_bhist(recorded("bhist-l-done.txt"), "1206").end_reason == "COMPLETED"
    failed = parse_bhist(recorded("bhist-l-exit.txt"), "1207")
    assert (failed.end_reason, job_words("lsf", failed)) == ("FAILED", "failed: exit code 3")
    killed = parse_bhist(recorded("bhist-l-killed.txt"), "1208")  # "Completed <exit>; TERM_OWNER: ..."
    assert (killed.state, killed.end_reason, job_words("lsf", killed)) == (
        JobState.CANCELLED, "CANCELLED", "cancelled")


def _terminated(term: str, message: str, code: int) -> str:
    """bhist-l-exit.txt with its last events as LSF logs a job it terminated (hand-written, in the
    layout of the recorded bhist-l-killed.txt)."""
    return recorded("bhist-l-exit.txt").replace(
        "Mon Oct 21 10:40:09: Exited with exit code 3. The CPU time used is 0.4 seconds;\n"
        "Mon Oct 21 10:40:09: Completed <exit>;",
        f"Mon Oct 21 10:40:09: Exited with exit code {code}. The CPU time used is 0.4 seconds;\n"
        f"Mon Oct 21 10:40:09: Completed <exit>; {term}: {message};")


@pytest.mark.parametrize(("term", "message", "code", "state", "end", "words"), [
    ("TERM_RUNLIMIT", "job killed after reaching LSF run time limit", 140, JobState.FAILED, "TIMEOUT",
     "time limit reached"),
    ("TERM_MEMLIMIT", "job killed after reaching LSF memory usage limit", 137, JobState.FAILED,
     "OUT_OF_MEMORY", "out of memory"),
    ("TERM_SWAP", "job killed after reaching LSF swap usage limit", 137, JobState.FAILED, "OUT_OF_MEMORY",
     "out of memory"),
    ("TERM_CPULIMIT", "job killed after reaching LSF CPU usage limit", 152, JobState.FAILED, "CPU_LIMIT",
     "CPU time limit reached"),
    ("TERM_ADMIN", "job killed by root or LSF administrator", 130, JobState.CANCELLED, "CANCELLED",
     "cancelled"),
    ("TERM_PREEMPT", "job killed after preemption", 137, JobState.FAILED, "PREEMPTED", "preempted"),
    ("TERM_DEADLINE", "job killed after deadline expires", 137, JobState.FAILED, "DEADLINE",
     "deadline reached"),
    ("TERM_CWD_NOTEXIST", "current working directory not accessible or does not exist on the execution host",
     1, JobState.FAILED, "LAUNCH_FAILED", "could not be started"),
    ("TERM_LOAD", "job killed after load exceeds threshold", 137, JobState.FAILED, "KILLED",
     "killed by signal 9 (SIGKILL)"),
    ("TERM_UNKNOWN", "unknown", 3, JobState.FAILED, "FAILED", "failed: exit code 3"),
])
def test_bhist_termination_reasons(term, message, code, state, end, words):
    info = parse_bhist(_terminated(term, message, code), "1207")
    assert (info.state, info.exit_code, info.end_reason) == (state, code, end)
    assert job_words("lsf", info) == words


def test_a_termination_reason_wrapped_over_two_lines_is_read_whole():
    text = _terminated("TERM_RUNLIMIT", "job killed after reaching LSF run time limit", 140).replace(
        "Completed <exit>; TERM_RUNLIMIT:", "Completed <exit>; TERM_RUN\n                     LIMIT:")
    assert parse_bhist(text, "1207").end_reason == "TIMEOUT"


def test_a_requeued_job_forgets_its_termination_reason():
    text = _terminated("TERM_RUNLIMIT", "job killed after reaching LSF run time limit", 140)
    text = text.replace("run time limit;", "run time limit;\n"
                        "Mon Oct 21 10:40:10: Pending: Job has been requeued;\n"
                        "Mon Oct 21 10:40:11: Dispatched 4 Task(s) on Host(s) <node019>;\n"
                        "Mon Oct 21 10:40:20: Done successfully. The CPU time used is 0.1 seconds;")
    info = parse_bhist(text, "1207")
    assert (info.state, info.end_reason) == (JobState.COMPLETED, "COMPLETED")


def test_bjobs_end_reasons_by_stat():
    infos, _ = parse_bjobs_json(recorded("bjobs-json-mixed.json"))
    ends = {info.raw_state: info.end_reason for info in infos.values()}
    assert ends["DONE"] == "COMPLETED" and ends["EXIT"] == "FAILED" and ends["ZOMBI"] == "CANCELLED"
    assert all(ends[stat] == "" for stat in ("RUN", "PEND", "USUSP", "UNKWN", "WAIT"))


# ---- bsub -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "said"), [
    ("bsub-refused-no-such-queue.txt", "nosuch: No such queue"),
    ("bsub-refused-permission.txt", "User permission denied"),
    ("bsub-refused-memlimit.txt", "Cannot exceed queue's hard limit(s)"),
    ("bsub-refused-bad-resreq.txt", "Bad resource requirement syntax"),
    ("bsub-refused-rusage-limit-wrapped.txt", "Error in rusage section: The merged job-level and "
     "application-level rusage value is outside the range set by RESRSV_LIMIT defined in lsb.queues"),
])
def test_bsub_refusals_say_what_to_fix(name, said):
    assert submit_error_message(recorded(name)) == said


def test_bsub_refusal_after_a_warning_and_busy_lines():
    stderr = ("LSF is processing your request. Please wait ...\nWarning: project name is ignored.\n"
              + recorded("bsub-refused-no-such-queue.txt"))
    assert submit_error_message(stderr) == "nosuch: No such queue"
    assert submit_error_message("") == "bsub failed without saying why"
    assert len(submit_error_message("x" * 100_000 + ". Job not submitted.")) <= 500


# ---- directives ---------------------------------------------------------------------------------

#: The shipped profiles' directives (tests/test_form_cli.py renders them through the spawner too).
SHIPPED_DIRECTIVES = {
    "cpu-short": ["-q short", "-n 4", '-R "rusage[mem=16384MB/host] span[hosts=1]"', "-M 16384MB", "-W 4:00"],
    "cpu-long": ["-q long", "-n 16", '-R "rusage[mem=65536MB/host] span[hosts=1]"', "-M 65536MB", "-W 24:00"],
    "gpu": ["-q gpu", "-n 8", '-R "rusage[mem=65536MB/host] span[hosts=1]"', "-M 65536MB", "-W 8:00",
            '-gpu "num=1"'],
    "rstudio": ["-q short", "-n 2", '-R "rusage[mem=8192MB/host] span[hosts=1]"', "-M 8192MB", "-W 4:00"],
    "desktop": ["-q short", "-n 4", '-R "rusage[mem=16384MB/host] span[hosts=1]"', "-M 16384MB", "-W 4:00"],
    "xpra-gui": ["-q short", "-n 2", '-R "rusage[mem=8192MB/host] span[hosts=1]"', "-M 8192MB", "-W 8:00"],
}


@pytest.mark.parametrize("slug", sorted(SHIPPED))
def test_directives_of_every_shipped_profile(slug):
    lines = get_scheduler("lsf").directives(SHIPPED[slug].job, "pw-alice-1", "/j/job.out")
    assert lines[:2] == ["#BSUB -J pw-alice-1", "#BSUB -o /j/job.out"]
    assert all(line.startswith("#BSUB ") for line in lines)
    # Other schedulers' extra lines (the gpu profile's slurm and pbs ones) are not LSF's.
    assert not any("constraint" in line or "place=excl" in line for line in lines)
    if slug in SHIPPED_DIRECTIVES:
        assert lines[2:] == [f"#BSUB {line}" for line in SHIPPED_DIRECTIVES[slug]]


def test_directives_of_other_shapes():
    lsf = get_scheduler("lsf")
    several = profile(nodes=2, cores=8, memory="4G", walltime="90", account="proj", qos="high",
                      extra_directives={"lsf": ["-x", '-R "select[a100]"'], "slurm": ["--nope"]})
    assert lsf.directives(several.job, "n", "/o")[2:] == [
        "#BSUB -n 16", '#BSUB -R "rusage[mem=4096MB/host] span[ptile=8]"', "#BSUB -M 4096MB",
        "#BSUB -W 1:30", "#BSUB -P proj", "#BSUB -x", '#BSUB -R "select[a100]"']
    bare = profile(walltime="00:00:30", extra_directives=["-B"])
    assert lsf.directives(bare.job, "n", "/o")[2:] == ['#BSUB -n 1', '#BSUB -R "span[hosts=1]"',
                                                      "#BSUB -W 0:01", "#BSUB -B"]


def test_memory_reservation_without_a_method_for_older_fix_packs():
    lsf = get_scheduler("lsf", settings={"memory_reservation_method": "cluster"})
    lines = lsf.directives(profile(memory="1G").job, "n", "/o")
    assert '#BSUB -R "rusage[mem=1024MB] span[hosts=1]"' in lines and "#BSUB -M 1024MB" in lines


@pytest.mark.parametrize(("settings", "key"), [
    ({"memory_reservation_method": "task"}, "memory_reservation_method"),
    ({"new_job_grace": -1}, "new_job_grace"), ({"new_job_grace": 7200}, "new_job_grace"),
    ({"new_job_grace": "60"}, "new_job_grace"), ({"parallel_environment": "smp"}, "parallel_environment"),
])
def test_bad_site_settings_name_the_key(settings, key):
    with pytest.raises(SettingsError) as raised:
        get_scheduler("lsf", settings=settings)
    assert raised.value.key == key and raised.value.kind == "lsf"


@pytest.mark.parametrize(("seconds", "limit"), [
    (1, "0:01"), (59, "0:01"), (60, "0:01"), (61, "0:02"), (3600, "1:00"), (3601, "1:01"),
    (36 * 3600, "36:00"), (0, "0:01"),
])
def test_run_limit_rounds_up_to_minutes(seconds, limit):
    assert run_limit(seconds) == limit


@pytest.mark.parametrize("name", ["a b", "x[1-10]", "x%2", "-J", "a*", "a'b", 'a"b', "", "x" * 4095])
def test_names_bsub_would_not_take_as_one_plain_name_are_refused(name):
    with pytest.raises(ValueError, match="job name"):
        get_scheduler("lsf").directives(profile().job, name, "/o")


@pytest.mark.parametrize("output", ["/j/%J.out", "/j/a b", "/j/'x'", ""])
def test_output_paths_bsub_would_change_are_refused(output):
    with pytest.raises(ValueError, match="output path"):
        get_scheduler("lsf").directives(profile().job, "n", output)


def test_the_whole_script_for_lsf():
    cpu = SHIPPED["cpu-short"]
    selection = Selection(profile=cpu, environment=None, app="jupyter", job=cpu.job)
    script = render_script(ScriptRequest(
        selection=selection, scheduler="lsf", job_name="pw-alice-1", job_dir="/home/alice/.pw_spawner/jobs/a",
        app=jupyter_launch(["jupyterhub-singleuser"], [], "/lab"), bind_ip="0.0.0.0",
        extra_directives=["-app jupyter"]))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert lines[1:10] == [
        "#BSUB -J pw-alice-1", "#BSUB -o /home/alice/.pw_spawner/jobs/a/job.out", "#BSUB -q short",
        "#BSUB -n 4", '#BSUB -R "rusage[mem=16384MB/host] span[hosts=1]"', "#BSUB -M 16384MB",
        "#BSUB -W 4:00", "#BSUB -app jupyter", "#"]
    assert 'PW_JOB_ID="${LSB_JOBID:-$$}"' in lines
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


# ---- commands, through a stub executor ------------------------------------------------------------


class Recorded:
    """Answers each exact argv from a table with (rc, stdout, stderr); any other command fails."""

    def __init__(self, answers, account="alice"):
        self.answers = {tuple(argv): answer for argv, answer in answers.items()}
        self.calls: list[tuple[str, ...]] = []
        self.inputs: list[str | None] = []
        self.account = account

    async def run(self, argv, *, input=None, timeout=30, max_output=0):
        self.calls.append(tuple(argv))
        self.inputs.append(input)
        answer = self.answers.get(tuple(argv))
        if answer is None:
            raise AssertionError(f"unexpected command {argv}")
        if isinstance(answer, Exception):
            raise answer
        rc, out, err = answer
        return CommandResult(tuple(argv), rc, out, err)


def ref(job_id):
    return JobRef(job_id, f"job{job_id}", f"/jobs/{job_id}")


MKDIR = ("mkdir", "-p", "-m", "0700", "--", "/jobs/x")


def bjobs(*ids):
    return ("bjobs", "-o", BJOBS_FIELDS, "-json", "-a", "-u", "all", *ids)


def bhist(job_id):
    return ("bhist", "-a", "-l", "-n", "2", "-u", "all", job_id)


async def test_one_bjobs_answers_for_every_job():
    ids = ["1201", "1202", "1206", "1207", "1210"]
    executor = Recorded({bjobs(*ids): (255, recorded("bjobs-json-mixed.json"), "")})
    infos = await LSFScheduler().query(executor, [ref(i) for i in ids])
    assert [infos[i].state for i in ids] == [JobState.RUNNING, JobState.PENDING, JobState.COMPLETED,
                                             JobState.FAILED, JobState.PENDING]
    assert executor.calls == [bjobs(*ids)]
    assert await LSFScheduler().query(executor, []) == {}


async def test_a_job_bjobs_does_not_find_is_confirmed_by_bhist():
    ids = ["1206", "1207", "1208", "999999"]
    not_found = _document(*({"JOBID": i, "ERROR": f"Job <{i}> is not found"} for i in ids))
    executor = Recorded({
        bjobs(*ids): (255, not_found, ""),
        bhist("1206"): (0, recorded("bhist-l-done.txt"), ""),
        bhist("1207"): (0, recorded("bhist-l-exit.txt"), ""),
        bhist("1208"): (0, recorded("bhist-l-killed.txt"), ""),
        bhist("999999"): (255, "", recorded("bhist-no-matching.txt")),
    })
    infos = await LSFScheduler().query(executor, [ref(i) for i in ids])
    assert {i: (j.state, j.exit_code) for i, j in infos.items()} == {
        "1206": (JobState.COMPLETED, 0), "1207": (JobState.FAILED, 3), "1208": (JobState.CANCELLED, 130),
        "999999": (JobState.COMPLETED, None)}
    assert infos["999999"].raw_state == "GONE"
    assert executor.calls == [bjobs(*ids), *(bhist(i) for i in ids)]


async def test_the_cache_takes_the_termination_reason_over_the_bare_exit():
    """bjobs lists the ended job as EXIT (FAILED, exit code only); once it has forgotten the job
    (CLEAN_PERIOD), bhist says LSF ended it at its run limit: the more telling answer wins."""
    listed = Recorded({bjobs("1207"): (0, recorded("bjobs-json-exit.json"), "")})
    cache = StatusCache(LSFScheduler(), listed, refresh_interval=30, window=0)
    first = await cache.status(ref("1207"), max_age=0)
    assert (first.state, first.exit_code, first.end_reason) == (JobState.FAILED, 3, "FAILED")
    cache.executor = Recorded({
        bjobs("1207"): (255, _document({"JOBID": "1207", "ERROR": "Job <1207> is not found"}), ""),
        bhist("1207"): (0, _terminated("TERM_RUNLIMIT", "job killed after reaching LSF run time limit",
                                       140), ""),
    })
    later = await cache.status(ref("1207"), max_age=0)
    assert (later.state, later.end_reason) == (JobState.FAILED, "TIMEOUT")


async def test_the_fake_lsf_run_limit_through_bhist(fake_lsf, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    submitted = run("bsub", "-W", "0:01", input="#!/bin/sh\ntrue\n")
    job_id = submitted.stdout.split("<", 1)[1].split(">", 1)[0]
    fake_lsf.wait_for_state(job_id, "COMPLETED")
    # Past its -W (a minute at least, too long to wait for): the record the fake's supervisor leaves.
    fake_lsf.store.update(int(job_id), lambda job: job.update(state="TIMEOUT", exit_code=-15))
    executor = LocalExecutor()
    listed = (await LSFScheduler().query(executor, [ref(job_id)]))[job_id]
    assert (listed.raw_state, listed.exit_code, listed.end_reason) == ("EXIT", 140, "FAILED")
    fake_lsf.set_knobs(PW_FAKE_CLEAN_PERIOD=0)  # bjobs forgets it: bhist tells
    confirmed = (await LSFScheduler().query(executor, [ref(job_id)]))[job_id]
    assert (confirmed.state, confirmed.end_reason) == (JobState.FAILED, "TIMEOUT")


async def test_a_job_left_out_of_the_answer_is_confirmed_too():
    executor = Recorded({bjobs("1201", "1216"): (0, recorded("bjobs-json-running.json"), ""),
                         bhist("1216"): (0, recorded("bhist-l-pending.txt"), "")})
    infos = await LSFScheduler().query(executor, [ref("1201"), ref("1216")])
    assert (infos["1201"].state, infos["1216"].state) == (JobState.RUNNING, JobState.UNKNOWN)


async def test_a_job_just_submitted_is_unknown_not_gone():
    """A child mbatchd may not list a job submitted less than MBD_REFRESH_TIME ago."""
    executor = Recorded({MKDIR: (0, "", ""),
                         ("bsub",): (0, recorded("bsub-submitted.txt"), ""),
                         bjobs("1201"): (255, _document({"ERROR": "Job <1201> is not found"}), "")})
    lsf = LSFScheduler()
    assert await lsf.submit(executor, "#!/bin/bash\n", name="x", job_dir="/jobs/x") == "1201"
    info = (await LSFScheduler().query(executor, [ref("1201")]))["1201"]
    assert info.state is JobState.UNKNOWN and "yet" in info.reason
    assert bhist("1201") not in executor.calls
    LSFScheduler._submitted_at["1201"] -= LSFSettings().new_job_grace + 1
    executor.answers[bhist("1201")] = (255, "", "No matching job found\n")
    assert (await LSFScheduler().query(executor, [ref("1201")]))["1201"].raw_state == "GONE"


async def test_the_grace_is_a_site_setting():
    executor = Recorded({MKDIR: (0, "", ""), ("bsub",): (0, recorded("bsub-submitted.txt"), ""),
                         bjobs("1201"): (255, _document({"ERROR": "Job <1201> is not found"}), ""),
                         bhist("1201"): (0, recorded("bhist-l-pending.txt").replace("1216", "1201"), "")})
    await LSFScheduler().submit(executor, "#!/bin/bash\n", name="x", job_dir="/jobs/x")
    at_once = get_scheduler("lsf", settings={"new_job_grace": 0})
    assert (await at_once.query(executor, [ref("1201")]))["1201"].state is JobState.UNKNOWN
    assert executor.calls[-1] == bhist("1201")


async def test_a_failing_or_unreadable_bjobs_makes_every_job_unknown():
    for answer in [(255, "", "LSF is down. Please wait...\n"), (0, "", ""), (0, "<html>", ""),
                   (0, '{"COMMAND":"bjobs","RECORDS":[{"JOBID":"1"', ""), ExecutorError("timed out")]:
        executor = Recorded({bjobs("1", "2"): answer})
        infos = await LSFScheduler().query(executor, [ref("1"), ref("2")])
        assert {i.state for i in infos.values()} == {JobState.UNKNOWN}, answer
        assert executor.calls == [bjobs("1", "2")]


async def test_a_failing_bhist_is_unknown_not_gone():
    not_found = _document({"JOBID": "1206", "ERROR": "Job <1206> is not found"})
    for answer in [(255, "", "lsb.events: Permission denied\n"), ExecutorError("ssh: timeout"), (0, "", "")]:
        executor = Recorded({bjobs("1206"): (255, not_found, ""), bhist("1206"): answer})
        assert (await LSFScheduler().query(executor, [ref("1206")]))["1206"].state is JobState.UNKNOWN


async def test_another_error_about_a_job_is_unknown():
    answer = _document({"JOBID": "1300", "ERROR": "User permission denied"})
    executor = Recorded({bjobs("1300"): (255, answer, "")})
    info = (await LSFScheduler().query(executor, [ref("1300")]))["1300"]
    assert (info.state, info.reason) == (JobState.UNKNOWN, "User permission denied")


async def test_submit_sends_the_script_on_stdin_and_reads_the_id():
    for name, job_id in [("bsub-submitted.txt", "1201"), ("bsub-submitted-default-queue.txt", "1214"),
                         ("bsub-busy-submitted.txt", "1215")]:
        executor = Recorded({MKDIR: (0, "", ""), ("bsub",): (0, recorded(name), "")})
        script = "#!/bin/bash\n#BSUB -J x\n"
        assert await LSFScheduler().submit(executor, script, name="x", job_dir="/jobs/x") == job_id
        assert executor.calls == [MKDIR, ("bsub",)]
        assert executor.inputs[1] == "#!/bin/bash\n#BSUB -J x\n"


@pytest.mark.parametrize(("rc", "stdout", "stderr", "said"), [
    (255, "", recorded("bsub-refused-no-such-queue.txt"), "LSF refused the job: nosuch: No such queue"),
    (255, "", recorded("bsub-refused-memlimit.txt"),
     "LSF refused the job: Cannot exceed queue's hard limit(s)"),
    (255, "", recorded("bsub-refused-permission.txt"), "LSF refused the job: User permission denied"),
    # Exit 0 with a refusal, as bsub has been seen to do.
    (0, "", recorded("bsub-refused-bad-resreq.txt"), "LSF refused the job: Bad resource requirement syntax"),
    (0, "something else\n", "", "LSF refused the job: something else"),
    (0, "Job <1> is submitted to queue <a>.\nJob <2> is submitted to queue <a>.\n", "", "LSF refused"),
    (1, "", "", "bsub failed without saying why"),
])
async def test_submit_refusals_keep_the_reason(rc, stdout, stderr, said):
    executor = Recorded({MKDIR: (0, "", ""), ("bsub",): (rc, stdout, stderr)})
    with pytest.raises(SubmitError, match=re.escape(said)):
        await LSFScheduler().submit(executor, "#!/bin/bash\n", name="x", job_dir="/jobs/x")
    assert LSFScheduler._submitted_at == {}


async def test_submit_when_lsf_cannot_be_reached():
    executor = Recorded({MKDIR: (0, "", ""),
                         ("bsub",): ExecutorError("bsub: command not found")})
    with pytest.raises(SubmitError, match="LSF could not be reached"):
        await LSFScheduler().submit(executor, "#!/bin/bash\n", name="x", job_dir="/jobs/x")


async def test_cancel():
    for job_id, answer in [("1201", (0, recorded("bkill-terminated.txt"), "")),
                           ("1206", (255, "", recorded("bkill-finished.txt"))),
                           ("999999", (255, "", recorded("bkill-no-matching.txt")))]:
        executor = Recorded({("bkill", job_id): answer})
        await LSFScheduler().cancel(executor, ref(job_id))
        assert executor.calls == [("bkill", job_id)]


async def test_cancel_failures_are_errors():
    cases = [("1300", (255, "", recorded("bkill-permission.txt"))),
             # Another job's "already finished" does not count for this one.
             ("1301", (255, "", "Job <13011>: Job has already finished\nJob <1>: No matching job found\n")),
             ("1302", ExecutorError("timed out"))]
    for job_id, answer in cases:
        with pytest.raises(SchedulerError, match=f"could not cancel job {job_id}"):
            await LSFScheduler().cancel(Recorded({("bkill", job_id): answer}), ref(job_id))


def find_argv(name, account="alice"):
    return ("bjobs", "-u", account, "-J", name, "-o", FIND_FIELDS, "-json")


async def test_find_lists_this_accounts_unfinished_jobs_of_the_name():
    name = "pw-alice-bfebef88e4"
    executor = Recorded({find_argv(name): (0, recorded("bjobs-json-find.json"), "")})
    assert await LSFScheduler().find(executor, name, "/jobs/x") == ["1220", "1221"]
    none = Recorded({find_argv(name): (255, "", recorded("bjobs-no-unfinished.txt"))})
    assert await LSFScheduler().find(none, name, "/jobs/x") == []
    empty = Recorded({find_argv(name): (0, _document(), "")})
    assert await LSFScheduler().find(empty, name, "/jobs/x") == []


async def test_find_compares_names_exactly_and_skips_ended_jobs():
    name = "pw-alice-1"
    answer = _document(
        {"JOBID": "1", "STAT": "RUN", "JOB_NAME": name},
        {"JOBID": "2", "STAT": "RUN", "JOB_NAME": name + "x"},
        {"JOBID": "3", "STAT": "DONE", "JOB_NAME": name},
        {"JOBID": "4", "STAT": "PEND", "JOB_NAME": f'{name}","JOBID":"9'},
        {"JOBID": "5", "STAT": "PEND", "JOB_NAME": "Job <6> is not found"},
        {"JOBID": "../7", "STAT": "PEND", "JOB_NAME": name},
        {"ERROR": "No unfinished job found"},
    )
    assert await LSFScheduler().find(Recorded({find_argv(name): (0, answer, "")}), name, "/x") == ["1"]


async def test_find_fails_loudly_when_bjobs_does():
    executor = Recorded({find_argv("n"): (255, "", "LSF is down. Please wait...\n")})
    with pytest.raises(SchedulerError, match="cannot list jobs"):
        await LSFScheduler().find(executor, "n", "/x")


@pytest.mark.parametrize(("name", "rc", "sees_all"), [
    ("bparams-a.txt", 0, True), ("bparams-a-secure.txt", 0, False),
])
async def test_whether_the_query_account_sees_every_job(name, rc, sees_all):
    executor = Recorded({("bparams", "-a"): (rc, recorded(name), "")})
    assert await LSFScheduler().shows_other_users_jobs(executor) is sees_all


async def test_visibility_cannot_be_told_when_bparams_fails():
    for answer in [(255, "", "LSF is down. Please wait...\n"), (0, "garbage\n", ""), ExecutorError("x")]:
        executor = Recorded({("bparams", "-a"): answer})
        assert await LSFScheduler().shows_other_users_jobs(executor) is None


def test_secure_job_info_level():
    assert parse_secure_job_info_level(recorded("bparams-a.txt")) == 0
    assert parse_secure_job_info_level(recorded("bparams-a-secure.txt")) == 2
    assert parse_secure_job_info_level("    SECURE_JOB_INFO_LEVEL = 0\n") == 0
    assert parse_secure_job_info_level("") is None
