"""pw_spawner/schedulers/reasons.py: why a job waits and why it ended, in words, for every scheduler.

The tables are checked whole (every Slurm code has words of its own), against what the schedulers
really printed where a recording exists (tests/data/slurm's squeue reasons, tests/data/lsf's pending
reasons, the words the Grid Engine and LSF modules give), and against what a cluster user can put in
front of them: control characters, a 10 kB reason, a code no table knows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pw_spawner.schedulers import lsf, sge
from pw_spawner.schedulers.base import JobInfo
from pw_spawner.schedulers.reasons import (
    END_REASONS,
    GENERIC_END_REASONS,
    MAX_WORDS,
    SGE_REASONS,
    SLURM_REASONS,
    end_words,
    job_words,
    queue_words,
)
from pw_spawner.status import JobState

DATA = Path(__file__).resolve().parent / "data"
KINDS = ["slurm", "pbs", "torque", "sge", "lsf", "local", "nosuchkind"]
# What must never reach a page: C0/C1 controls, line and paragraph separators, bidi overrides.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def plain(words: str) -> bool:
    return not CONTROL.search(words) and len(words) <= MAX_WORDS and words == words.strip()


# -- Slurm ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(SLURM_REASONS))
def test_every_slurm_code_has_words_of_its_own(code):
    words = queue_words("slurm", code)
    assert words == SLURM_REASONS[code]
    assert words and words != code and plain(words)
    assert words[0].islower() or words.startswith(("CPU", "QOS")), words
    assert queue_words("slurm", f"({code})") == words  # squeue's NODELIST(REASON) column adds brackets


@pytest.mark.parametrize(("code", "words"), [
    ("Resources", "waiting for free resources"),
    ("Priority", "waiting for jobs ahead of it"),
    ("Dependency", "waiting for another job to finish"),
    ("JobHeldUser", "held by its owner"),
    ("JobHeldAdmin", "held by an administrator"),
    ("BeginTime", "waiting for its start time"),
    ("Reservation", "waiting for its reservation to start"),
    ("PartitionTimeLimit", "asks for more time than the partition allows"),
    ("QOSMaxJobsPerUserLimit", "you are running as many jobs as your QOS allows"),
    ("QOSMaxCpuPerUserLimit", "you are using all the CPUs your QOS allows per user"),
    ("AssocGrpCpuLimit", "the jobs of its account use all the CPUs the account allows"),
    ("launch failed requeued held", "held after a failed start (ask the cluster's administrators)"),
])
def test_slurm_codes_in_plain_words(code, words):
    assert queue_words("slurm", code) == words


def test_every_reason_the_recorded_slurm_printed_is_in_the_table():
    manifest = json.loads((DATA / "slurm" / "manifest.json").read_text())
    squeue = next(c for c in manifest["commands"] if c["name"] == "squeue-mixed")
    reasons = {line.split("|")[2] for line in (DATA / "slurm" / squeue["stdout"]).read_text().splitlines()}
    assert {"Resources", "JobHeldUser", "Dependency", "PartitionTimeLimit", "TimeLimit"} <= reasons
    assert reasons - {"None"} <= set(SLURM_REASONS)


def test_slurm_unavailable_nodes_are_named():
    words = queue_words("slurm", "ReqNodeNotAvail, UnavailableNodes:node[01-03]")
    assert words == f"{SLURM_REASONS['ReqNodeNotAvail']}: UnavailableNodes:node[01-03]"


@pytest.mark.parametrize(("code", "family"), [
    ("QOSGrpBBMinutes", "the jobs of its QOS have reached one of the QOS's limits"),
    ("QOSMaxBBPerUser", "over a per-user or per-job limit of its QOS"),
    ("QOSMinGRES", "asks for less than its QOS requires"),
    ("AssocGrpEnergyRunMinutes", "the jobs of its account have reached one of the account's limits"),
    ("AssocMaxLicensePerJob", "over a per-user or per-job limit of its account"),
    ("MaxBBPerAccount", "its account has reached a per-account limit of its QOS"),
])
def test_slurm_codes_outside_the_table_get_their_familys_words(code, family):
    assert code not in SLURM_REASONS
    assert queue_words("slurm", code) == f"{family} ({code})"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("nothing", ["", "None", "(null)", "   ", "-"])
def test_no_reason_is_no_words(kind, nothing):
    assert queue_words(kind, nothing) == ""


@pytest.mark.parametrize("kind", KINDS)
def test_an_unknown_code_shows_as_itself(kind):
    assert queue_words(kind, "SiteSpecificReason42") == "SiteSpecificReason42"


# -- PBS, Grid Engine, LSF --------------------------------------------------------------------------------


@pytest.mark.parametrize(("comment", "words"), [
    ("Not Running: Insufficient amount of resource: ncpus (R: 4 A: 2 T: 2)",
     "waiting for free resources (ncpus)"),
    ("Not Running: Insufficient amount of resource", "waiting for free resources"),  # the fake PBS's
    ("Not Running: Insufficient amount of resource qlist", "waiting for free resources (qlist)"),
    ("Not Running: Insufficient amount of queue resource: ncpus (R: 8 A: 0 T: 64)",
     "the jobs of its queue use all the ncpus it allows"),
    ("Not Running: Not enough free nodes available", "waiting for free nodes"),
    ("Not Running: Job would conflict with reservation or top job", "waiting for jobs ahead of it"),
    ("Not Running: User has reached queue jhublogin running job limit.",
     "you are running as many jobs as you may"),
    ("Not Running: would exceed user alice's limit on resource ncpus in complex",
     "you are using all the ncpus you may"),
    ("Not Running: Queue workq job limit has been reached.", "the queue is full"),
    ("Not Running: Job would cross dedicated time boundary", "waiting for the end of a maintenance window"),
    ("Can Never Run: Insufficient amount of resource: ncpus (R: 64 A: 8 T: 8)",
     "can never run as asked: Insufficient amount of resource: ncpus (R: 64 A: 8 T: 8)"),
    ("Job held by alice on Mon Oct  3 20:16:26 2022", "held"),
    ("job held, too many failed attempts to run", "held after too many failed starts"),
    ("Job run at Tue Nov 15 at 16:44 on (node1:ncpus=4)", ""),
])
@pytest.mark.parametrize("kind", ["pbs", "torque"])
def test_pbs_comments(kind, comment, words):
    assert queue_words(kind, comment) == words


def test_every_word_the_grid_engine_module_gives_is_in_the_table():
    assert set(sge._WAITING.values()) <= set(SGE_REASONS)
    assert queue_words("sge", "held") == "held (qrls releases it)"
    assert queue_words("sge", "hqw") == queue_words("sge", "held")
    assert queue_words("sge", "Eqw") == queue_words("sge", "in error (see qstat -j)")
    assert queue_words("sge", "Eqw").startswith("in an error state")


def test_lsf_pending_reasons_as_documented():
    records = json.loads((DATA / "lsf" / "bjobs-json-pending.json").read_text())["RECORDS"]
    said = [queue_words("lsf", record["PEND_REASON"]) for record in records if record["PEND_REASON"]]
    assert said == ["waiting to be scheduled", "waiting for free resources (mem)", "held by its owner",
                    "you are running as many jobs as you may"]


def test_lsf_several_reasons_each_in_words():
    reason = ("Not enough job slot(s): 3 hosts; Job dependency condition not satisfied; "
              "Not enough job slot(s);")
    assert queue_words("lsf", reason) == "waiting for free job slots; waiting for another job to finish"


def test_the_lsf_modules_own_words_pass_unchanged():
    for words in lsf._STATE_REASONS.values():
        assert queue_words("lsf", words) == words


# -- how a job ended ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "exit_code", "words"), [
    ("COMPLETED", 0, "completed"),
    ("OUT_OF_MEMORY", None, "out of memory"),
    ("TIMEOUT", 0, "time limit reached"),
    ("CANCELLED", 0, "cancelled"),
    ("FAILED", 3, "failed: exit code 3"),
    ("NODE_FAIL", None, "node failure"),
    ("PREEMPTED", None, "preempted"),
    ("DEADLINE", None, "deadline reached"),
    ("CPU_LIMIT", None, "CPU time limit reached"),
    ("LAUNCH_FAILED", None, "could not be started"),
    ("KILLED", None, "killed"),
    ("timeout", None, "time limit reached"),
])
def test_end_reasons_in_plain_words(code, exit_code, words):
    assert end_words("slurm", code, exit_code) == words


def test_every_end_reason_has_words():
    for code, words in END_REASONS.items():
        assert words and plain(words) and code == code.upper()
        assert plain(end_words("slurm", code, 1, "x"))
    assert GENERIC_END_REASONS < {*END_REASONS, ""}


def test_failed_without_an_exit_code_says_what_the_scheduler_said():
    # Slurm's job 1 of tests/data/slurm: FAILED, Reason=BadConstraints, ExitCode=0:1.
    assert end_words("slurm", "FAILED", 0, "BadConstraints") == f"failed: {SLURM_REASONS['BadConstraints']}"
    assert end_words("slurm", "FAILED", None) == "failed"


@pytest.mark.parametrize(("kind", "exit_code", "words"), [
    ("sge", 137, "killed by signal 9 (SIGKILL)"),
    ("lsf", 143, "killed by signal 15 (SIGTERM)"),
    ("pbs", 265, "killed by signal 9 (SIGKILL)"),  # PBS writes 256 + the signal
    ("torque", 271, "killed by signal 15 (SIGTERM)"),
    ("sge", 3, "killed"),
    ("sge", None, "killed"),
])
def test_killed_names_its_signal(kind, exit_code, words):
    assert end_words(kind, "KILLED", exit_code) == words


def test_launch_failure_with_the_schedulers_words():
    assert end_words("sge", "LAUNCH_FAILED", None, "opening input/output file") == \
        "could not be started: opening input/output file"


def test_an_ended_job_the_scheduler_no_longer_knows():
    assert end_words("slurm", "", None, "no longer known to Slurm") == "ended (no longer known to Slurm)"
    assert end_words("slurm", "") == "ended"


def test_an_unknown_end_code_shows_as_itself():
    assert end_words("slurm", "SPECIAL_SITE_END") == "SPECIAL_SITE_END"


def test_job_words_picks_the_side():
    pending = JobInfo("8", JobState.PENDING, "PENDING", "Resources")
    assert job_words("slurm", pending) == "waiting for free resources"
    ended = JobInfo("7", JobState.FAILED, "TIMEOUT", "TimeLimit", "vm", 0, end_reason="TIMEOUT")
    assert job_words("slurm", ended) == "time limit reached"
    gone = JobInfo("9", JobState.COMPLETED, "GONE", "no longer known to Slurm")
    assert job_words("slurm", gone) == "ended (no longer known to Slurm)"
    assert job_words("slurm", JobInfo("5", JobState.RUNNING, "RUNNING")) == ""


# -- what a cluster user can put there ---------------------------------------------------------------------

HOSTILE = [
    "Resources\x1b[2J\x1b[31m<script>alert(1)</script>",
    "\x00\x07Priority\r\nX-Injected: yes",
    "Job\u202eheld\u2028by\u2066admin",
    "A" * 10_000,
    "Not Running: Insufficient amount of resource: " + "n" * 10_000,
    "ReqNodeNotAvail, UnavailableNodes:" + "node," * 2_000,
    "New job is waiting for scheduling;" * 300,
    ";" * 10_000,
    "(" * 5_000 + ")" * 5_000,
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", HOSTILE, ids=lambda text: repr(text[:20]))
def test_hostile_reasons_come_out_plain_and_short(kind, text):
    words = queue_words(kind, text)
    assert plain(words), words
    ended = end_words(kind, text, 3, text)
    assert plain(ended), ended
    assert plain(end_words(kind, "FAILED", 0, text)) and plain(end_words(kind, "LAUNCH_FAILED", None, text))


def test_control_characters_become_blanks_and_the_code_is_kept():
    assert queue_words("slurm", "Weird\x1b[31mCode\x00") == "Weird [31mCode"
    assert end_words("slurm", "BOGUS\nX") == "BOGUS X"


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), text=st.text(max_size=3000),
       code=st.one_of(st.sampled_from(sorted(END_REASONS)), st.text(max_size=200)),
       exit_code=st.one_of(st.none(), st.integers(-1000, 1000)))
def test_never_raises_and_always_plain(kind, text, code, exit_code):
    assert plain(queue_words(kind, text))
    assert plain(end_words(kind, code, exit_code, text))
