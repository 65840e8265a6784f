"""The Grid Engine module on real recorded output (tests/data/sge, Son of Grid Engine 8.1.9): its
state letters, qstat -xml and qacct parsers, qsub's refusals, its directives, and the query that
confirms a job missing from qstat through qstat -j and qacct before it says the job ended."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pw_spawner.profiles import profile_from_dict
from pw_spawner.remote.executor import CommandResult
from pw_spawner.schedulers import JobRef, SettingsError, get_scheduler
from pw_spawner.schedulers.cache import StatusCache
from pw_spawner.schedulers.reasons import end_words, job_words
from pw_spawner.schedulers.sge import (
    GridEngineScheduler,
    parse_qacct,
    parse_qstat_xml,
    sge_state,
    submit_error_message,
)
from pw_spawner.status import JobState

DATA = Path(__file__).resolve().parent / "data" / "sge"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


@pytest.mark.parametrize(("letters", "state"), [
    ("qw", JobState.PENDING), ("hqw", JobState.PENDING), ("t", JobState.STARTING),
    ("r", JobState.RUNNING), ("dr", JobState.CANCELLED), ("Eqw", JobState.FAILED),
    ("z", JobState.COMPLETED), ("S", JobState.PENDING), ("Rr", JobState.RUNNING),
])
def test_state_letters(letters, state):
    assert sge_state(letters) is state


@given(st.text(max_size=12))
def test_any_state_word_has_an_answer(letters):
    assert isinstance(sge_state(letters), JobState)


def test_qstat_xml_running_pending_and_held():
    jobs = parse_qstat_xml(recorded("qstat-xml-mixed.xml"))
    assert {i: (j.state, j.raw_state, j.node) for i, j in jobs.items()} == {
        "2": (JobState.RUNNING, "r", "vm"),
        "3": (JobState.PENDING, "qw", None),
        "4": (JobState.PENDING, "qw", None),
        "5": (JobState.PENDING, "hqw", None),
    }
    assert jobs["5"].reason == "held"


def test_qstat_xml_deleting_empty_and_finished():
    assert parse_qstat_xml(recorded("qstat-xml-deleting.xml"))["2"].state is JobState.CANCELLED
    assert parse_qstat_xml(recorded("qstat-xml-empty.xml")) == {}
    finished = parse_qstat_xml(recorded("qstat-xml-zombie.xml"))
    assert finished and all(j.state is JobState.COMPLETED for j in finished.values())


@pytest.mark.parametrize("text", ["", "qstat: not xml", "<job_info><job_list><state>r", "error: commlib"])
def test_unreadable_qstat_output_is_an_error_not_an_empty_answer(text):
    with pytest.raises(ValueError):
        parse_qstat_xml(text)


def test_qacct_exit_code_and_killed():
    done = parse_qacct(recorded("qacct-j.txt"), "6")
    assert (done.state, done.exit_code, done.node, done.raw_state) == (JobState.FAILED, 3, "vm", "EXIT 3")
    killed = parse_qacct(recorded("qacct-j-qdel.txt"), "2")
    assert (killed.state, killed.exit_code) == (JobState.FAILED, 137)
    assert killed.raw_state == "FAILED 100 : assumedly after job"
    assert parse_qacct(recorded("qacct-j.txt"), "7") is None
    assert parse_qacct(recorded("qacct-j-missing.txt"), "999999") is None


def test_a_clean_exit_in_accounting_is_completed():
    text = recorded("qacct-j.txt").replace("exit_status  3", "exit_status  0")
    assert parse_qacct(text, "6").state is JobState.COMPLETED


# -- how a job ended (JobInfo.end_reason) ----------------------------------------------------------------

#: ``qacct -j 2`` as the test cell (tests/support/sge_cell.py, Son of Grid Engine 8.1.9) printed it on
#: 2026-12-02 for a job submitted with ``-l h_rt=5`` that slept 60 s: not in tests/data/sge, whose
#: recorder makes no such job.
QACCT_H_RT = (
    '==============================================================\n'
    'qname        all.q               \n'
    'hostname     vm                  \n'
    'group        pwtestuser          \n'
    'owner        pwtestuser          \n'
    'project      NONE                \n'
    'department   defaultdepartment   \n'
    'jobname      hrt                 \n'
    'jobnumber    2                   \n'
    'taskid       undefined\n'
    'account      sge                 \n'
    'priority     0                   \n'
    'qsub_time    Wed Dec  2 03:15:20 2026\n'
    'start_time   Wed Dec  2 03:15:20 2026\n'
    'end_time     Wed Dec  2 03:15:26 2026\n'
    'granted_pe   NONE                \n'
    'slots        1                   \n'
    'failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit\n'
    'exit_status  137                  (Killed)\n'
    'ru_wallclock 6s\n'
    'ru_utime     0.008s\n'
    'ru_stime     0.005s\n'
    'ru_maxrss    4.406KB\n'
    'ru_ixrss     0.000B\n'
    'ru_ismrss    0.000B\n'
    'ru_idrss     0.000B\n'
    'ru_isrss     0.000B\n'
    'ru_minflt    475                 \n'
    'ru_majflt    0                   \n'
    'ru_nswap     0                   \n'
    'ru_inblock   0                   \n'
    'ru_oublock   8                   \n'
    'ru_msgsnd    0                   \n'
    'ru_msgrcv    0                   \n'
    'ru_nsignals  0                   \n'
    'ru_nvcsw     10                  \n'
    'ru_nivcsw    8                   \n'
    'cpu          0.014s\n'
    'mem          0.000Bs\n'
    'io           39.846KB\n'
    'iow          0.000s\n'
    'maxvmem      3.332MB\n'
    'arid         undefined\n'
    'ar_sub_time  undefined\n'
    'category     -l h_rt=5\n'
)


def test_qacct_a_job_killed_at_its_h_rt_is_timeout():
    info = parse_qacct(QACCT_H_RT, "2")
    assert (info.state, info.exit_code, info.end_reason) == (JobState.FAILED, 137, "TIMEOUT")
    assert info.reason == "qmaster enforced h_rt, h_cpu, or h_vmem limit"
    assert end_words("sge", info.end_reason, info.exit_code, info.reason) == "time limit reached"


def test_qacct_qdel_is_a_kill_and_a_script_exit_a_failure():
    killed = parse_qacct(recorded("qacct-j-qdel.txt"), "2")  # failed 100, exit 137, no limit asked
    assert (killed.end_reason, killed.reason) == ("KILLED", "assumedly after job")
    assert job_words("sge", killed) == "killed by signal 9 (SIGKILL)"
    done = parse_qacct(recorded("qacct-j.txt"), "6")  # failed 0, exit 3
    assert (done.end_reason, job_words("sge", done)) == ("FAILED", "failed: exit code 3")
    clean = parse_qacct(recorded("qacct-j.txt").replace("exit_status  3", "exit_status  0"), "6")
    assert (clean.state, clean.end_reason) == (JobState.COMPLETED, "COMPLETED")


def _qacct(**fields: str) -> str:
    """The recorded qacct -j 6 record with some fields changed."""
    text = recorded("qacct-j.txt")
    for key, value in fields.items():
        text = re.sub(rf"^{key}\s.*$", f"{key:<12} {value}", text, flags=re.MULTILINE)
    return text


@pytest.mark.parametrize(("fields", "end"), [
    # Over h_vmem (1G per slot, 2 slots) by the shepherd's count: hand-written from the recorded record.
    ({"failed": "100 : assumedly after job", "exit_status": "137", "maxvmem": "2.100GB"}, "OUT_OF_MEMORY"),
    ({"failed": "37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "exit_status": "137",
      "maxvmem": "1.990GB"}, "OUT_OF_MEMORY"),
    ({"failed": "100 : assumedly after job", "exit_status": "137", "ru_wallclock": "301s"}, "TIMEOUT"),
    ({"failed": "0", "exit_status": "138", "ru_wallclock": "300s"}, "TIMEOUT"),  # at the limit, SIGUSR1
    ({"failed": "37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "exit_status": "137"}, "KILLED"),
    ({"failed": "100 : assumedly after job", "exit_status": "1", "ru_wallclock": "301s"}, "FAILED"),
    ({"failed": "0", "exit_status": "137", "maxvmem": "100.000MB"}, "FAILED"),  # its own process killed
    ({"failed": "26  : opening input/output file", "exit_status": "0"}, "LAUNCH_FAILED"),
    ({"failed": "0", "exit_status": "1", "category": "-l h_vmem=100M"}, "FAILED"),
])
def test_qacct_end_reasons(fields, end):
    assert parse_qacct(_qacct(**fields), "6").end_reason == end


def test_qacct_a_launch_failure_says_what_failed():
    info = parse_qacct(_qacct(failed="26  : opening input/output file"), "6")
    assert job_words("sge", info) == "could not be started: opening input/output file"


def test_qacct_a_deletion_univa_names_is_cancelled():
    text = recorded("qacct-j-qdel.txt").replace("category", "deleted_by   pwtestuser@vm\ncategory")
    assert parse_qacct(text, "2").end_reason == "CANCELLED"


@pytest.mark.parametrize("category", ["-l h_rt=abc", "-l h_vmem=", "-l =,,=", "-pe smp", "-l " + "x" * 5000])
def test_qacct_unreadable_limits_are_no_limits(category):
    text = _qacct(failed="100 : assumedly after job", exit_status="137", category=category)
    assert parse_qacct(text, "6").end_reason == "KILLED"


def test_qstat_deleting_and_error_states_end_reasons():
    deleting = parse_qstat_xml(recorded("qstat-xml-deleting.xml"))["2"]
    assert (deleting.state, deleting.end_reason) == (JobState.CANCELLED, "CANCELLED")
    error = recorded("qstat-xml-mixed.xml").replace("<state>hqw</state>", "<state>Eqw</state>")
    failed = parse_qstat_xml(error)["5"]
    assert (failed.state, failed.end_reason) == (JobState.FAILED, "LAUNCH_FAILED")
    running = parse_qstat_xml(recorded("qstat-xml-mixed.xml"))["2"]
    assert running.end_reason == ""


async def test_the_cache_keeps_a_deletion_over_the_kill_qacct_records():
    ids = [ref("2")]
    deleting = Recorded({("qstat", "-xml"): (0, recorded("qstat-xml-deleting.xml"), "")})
    cache = StatusCache(GridEngineScheduler(), deleting, refresh_interval=30, window=0)
    assert (await cache.status(ids[0], max_age=0)).end_reason == "CANCELLED"
    cache.executor = Recorded({
        ("qstat", "-xml"): (0, recorded("qstat-xml-empty.xml"), ""),
        ("qstat", "-j"): (1, "", recorded("qstat-j-missing.txt")),
        ("qacct", "-j", "2"): (0, recorded("qacct-j-qdel.txt"), ""),
    })
    assert (await GridEngineScheduler().query(cache.executor, ids))["2"].end_reason == "KILLED"
    kept = await cache.status(ids[0], max_age=0)
    assert (kept.state, kept.end_reason) == (JobState.CANCELLED, "CANCELLED")  # qdel'd, not just "killed"


@pytest.mark.parametrize(("name", "said"), [
    ("qsub-refused-nosuch-queue.txt", 'Job was rejected because job requests unknown queue "nosuch.q"'),
    ("qsub-refused-w-e-pe99.txt", "error: no suitable queues"),
])
def test_qsub_refusals_say_what_to_fix(name, said):
    assert submit_error_message(recorded(name)) == said


def test_every_recorded_refusal_gives_a_line():
    for path in DATA.glob("qsub-refused-*.txt"):
        message = submit_error_message(path.read_text())
        assert message and "Exiting" not in message and not message.startswith("Unable"), path.name


def test_directives():
    profile = profile_from_dict({"slug": "p", "display_name": "P", "job": {
        "partition": "all.q", "cores": 4, "memory": "10G", "walltime": "02:00:00", "gpus": 1,
        "account": "proj", "extra_directives": {"sge": ["-P physics"], "slurm": ["--nope"]}}})
    assert get_scheduler("sge").directives(profile.job, "pw-a-1", "/j/job.out") == [
        "#$ -N pw-a-1", "#$ -o /j/job.out", "#$ -j y", "#$ -S /bin/bash", "#$ -q all.q",
        "#$ -pe smp 4", "#$ -l h_vmem=2560M", "#$ -l h_rt=02:00:00", "#$ -l gpu=1", "#$ -A proj",
        "#$ -P physics"]
    one = profile_from_dict({"slug": "q", "display_name": "Q", "job": {"cores": 1}})
    assert "#$ -pe smp 1" not in get_scheduler("sge").directives(one.job, "n", "/o")


def test_the_sites_names_for_slots_memory_and_gpus():
    profile = profile_from_dict({"slug": "p", "job": {"cores": 4, "memory": "8G", "gpus": 2}})
    site = {"parallel_environment": "threaded", "memory_resources": ["mem_free", "h_vmem"],
            "gpu_resource": "nvgpu"}
    lines = get_scheduler("sge", settings=site).directives(profile.job, "n", "/o")
    assert [line for line in lines if line.startswith(("#$ -pe", "#$ -l"))] == [
        "#$ -pe threaded 4", "#$ -l mem_free=2048M", "#$ -l h_vmem=2048M", "#$ -l h_rt=01:00:00",
        "#$ -l gpu=2".replace("gpu", "nvgpu")]


@pytest.mark.parametrize(("settings", "key"), [
    ({"parallel_environment": "smp -l h_vmem=100G"}, "parallel_environment"),
    ({"parallel_environment": ""}, "parallel_environment"),
    ({"memory_resources": ["h_vmem\n#$ -l x"]}, "memory_resources[0]"),
    ({"pe": "smp"}, "pe"),
])
def test_bad_site_settings_name_the_key(settings, key):
    with pytest.raises(SettingsError) as raised:
        get_scheduler("sge", settings=settings)
    assert raised.value.key == key


class Recorded:
    """An executor that answers each command from a table (argv prefix -> result) and counts them."""

    def __init__(self, answers):
        self.answers, self.calls, self.account = answers, [], "pwtestuser"

    async def run(self, argv, *, input=None, timeout=30, max_output=0):
        self.calls.append(list(argv))
        for prefix, (rc, out, err) in self.answers.items():
            if list(argv[:len(prefix)]) == list(prefix):
                return CommandResult(tuple(argv), rc, out, err)
        raise AssertionError(f"unexpected command {argv}")


def ref(job_id):
    return JobRef(job_id, f"job{job_id}", f"/jobs/{job_id}")


async def test_one_qstat_answers_for_every_listed_job():
    executor = Recorded({("qstat", "-xml"): (0, recorded("qstat-xml-mixed.xml"), "")})
    infos = await GridEngineScheduler().query(executor, [ref("2"), ref("3"), ref("5")])
    assert [infos[i].state for i in ("2", "3", "5")] == [JobState.RUNNING, JobState.PENDING,
                                                         JobState.PENDING]
    assert executor.calls == [["qstat", "-xml", "-u", "*"]]


async def test_a_job_missing_from_qstat_is_confirmed_before_it_is_ended():
    executor = Recorded({
        ("qstat", "-xml"): (0, recorded("qstat-xml-empty.xml"), ""),
        ("qstat", "-j"): (1, "", recorded("qstat-j-missing.txt")),
        ("qacct", "-j", "6"): (0, recorded("qacct-j.txt"), ""),
        ("qacct", "-j"): (1, "", recorded("qacct-j-missing.txt")),
    })
    infos = await GridEngineScheduler().query(executor, [ref("6"), ref("999999")])
    assert (infos["6"].state, infos["6"].exit_code) == (JobState.FAILED, 3)
    assert (infos["999999"].state, infos["999999"].raw_state) == (JobState.COMPLETED, "GONE")


async def test_a_job_qstat_j_still_holds_is_unknown_not_ended():
    executor = Recorded({("qstat", "-xml"): (0, recorded("qstat-xml-empty.xml"), ""),
                         ("qstat", "-j"): (0, recorded("qstat-j-running.txt"), "")})
    assert (await GridEngineScheduler().query(executor, [ref("2")]))["2"].state is JobState.UNKNOWN


async def test_a_failing_qstat_makes_every_job_unknown():
    executor = Recorded({("qstat", "-xml"): (1, "", "error: commlib error: got select error")})
    infos = await GridEngineScheduler().query(executor, [ref("2"), ref("3")])
    assert {i.state for i in infos.values()} == {JobState.UNKNOWN}
    garbled = Recorded({("qstat", "-xml"): (0, "<job_info><job_list>", "")})
    assert (await GridEngineScheduler().query(garbled, [ref("2")]))["2"].state is JobState.UNKNOWN


async def test_cancelling_a_job_that_has_left_is_no_error():
    executor = Recorded({("qdel",): (1, recorded("qdel-missing.txt"), "")})
    await GridEngineScheduler().cancel(executor, ref("2"))


async def test_find_lists_only_unfinished_jobs_of_the_name():
    executor = Recorded({("qstat", "-xml", "-u", "pwtestuser"): (0, recorded("qstat-xml-mixed.xml"), "")})
    assert await GridEngineScheduler().find(executor, "pwheld", "/jobs/x") == ["5"]
    assert await GridEngineScheduler().find(executor, "nosuch", "/jobs/x") == []
