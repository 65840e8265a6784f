"""The per-cluster status cache and the choice of the account that queries (no scheduler needed)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pw_spawner.remote.executor import LocalExecutor
from pw_spawner.schedulers import visibility
from pw_spawner.schedulers.base import JobInfo, JobRef, Scheduler
from pw_spawner.schedulers.cache import StatusCache
from pw_spawner.status import JobState


class CountingScheduler(Scheduler):
    """Answers from a dict; counts calls and the jobs each was asked about."""

    kind = "counting"

    def __init__(self, delay: float = 0.0, fail: bool = False):
        self.states: dict[str, JobState] = {}
        self.calls: list[list[str]] = []
        self.delay, self.fail = delay, fail

    async def submit(self, executor, script, *, name, job_dir):
        raise NotImplementedError

    async def query(self, executor, jobs):
        self.calls.append([job.job_id for job in jobs])
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("squeue: error: slurm_receive_msg: Socket timed out")
        return {job.job_id: JobInfo(job.job_id, self.states.get(job.job_id, JobState.RUNNING))
                for job in jobs}

    async def cancel(self, executor, job):
        raise NotImplementedError

    async def find(self, executor, name, job_dir):
        return []


def jobs(n: int) -> list[JobRef]:
    return [JobRef(str(i), f"pw-{i}", f"/j/{i}") for i in range(n)]


async def test_a_thousand_polls_at_once_make_one_query():
    scheduler = CountingScheduler(delay=0.01)
    cache = StatusCache(scheduler, LocalExecutor(), refresh_interval=30, window=0.01)
    answers = await asyncio.gather(*(cache.status(job) for job in jobs(1000)))
    assert len(scheduler.calls) == 1 and len(scheduler.calls[0]) == 1000
    assert {info.state for info in answers} == {JobState.RUNNING}


async def test_fresh_answers_are_reused_and_stale_ones_refreshed():
    scheduler = CountingScheduler()
    cache = StatusCache(scheduler, LocalExecutor(), refresh_interval=0.2, window=0)
    job = jobs(1)[0]
    await cache.status(job)
    await cache.status(job)
    assert len(scheduler.calls) == 1
    scheduler.states["0"] = JobState.COMPLETED
    assert (await cache.status(job)).state is JobState.RUNNING  # still fresh enough for poll()
    assert (await cache.status(job, max_age=0)).state is JobState.COMPLETED  # a start asks for fresh
    await asyncio.sleep(0.25)
    await cache.status(job)
    assert len(scheduler.calls) == 3


async def test_a_refresh_answers_everyone_followed():
    scheduler = CountingScheduler()
    cache = StatusCache(scheduler, LocalExecutor(), refresh_interval=10, window=0)
    first, second = jobs(2)
    await cache.status(first)
    await cache.status(second)  # not in the first answer: one more query, for both
    assert scheduler.calls == [["0"], ["0", "1"]]
    await asyncio.gather(cache.status(first), cache.status(second))
    assert len(scheduler.calls) == 2


async def test_asking_during_a_query_waits_for_it_or_the_next():
    scheduler = CountingScheduler(delay=0.1)
    cache = StatusCache(scheduler, LocalExecutor(), refresh_interval=10, window=0)
    a, b, c = jobs(3)
    first = asyncio.ensure_future(cache.status(a))
    await asyncio.sleep(0.02)  # the query for [a] is in flight
    others = await asyncio.gather(cache.status(a, max_age=0), cache.status(b), cache.status(c))
    await first
    # a's second question took the answer in flight; b and c shared one query after it.
    assert scheduler.calls == [["0"], ["0", "1", "2"]]
    assert all(info.state is JobState.RUNNING for info in others)


async def test_a_failed_query_is_unknown_never_gone():
    cache = StatusCache(CountingScheduler(fail=True), LocalExecutor(), refresh_interval=10, window=0)
    info = await cache.status(jobs(1)[0])
    assert info.state is JobState.UNKNOWN and "Socket timed out" in info.reason


async def test_forgotten_jobs_are_not_asked_about():
    scheduler = CountingScheduler()
    cache = StatusCache(scheduler, LocalExecutor(), refresh_interval=0, window=0)
    a, b = jobs(2)
    await asyncio.gather(cache.status(a), cache.status(b))
    cache.forget("0")
    await cache.status(b)
    assert scheduler.calls[-1] == ["1"]


async def test_one_cache_per_cluster_key():
    made = []

    def make():
        made.append(StatusCache(CountingScheduler(), LocalExecutor()))
        return made[-1]

    one = StatusCache.shared(("hub", "slurm", ()), make)
    assert StatusCache.shared(("hub", "slurm", ()), make) is one
    assert StatusCache.shared(("resource", "other", "svc"), make) is not one
    assert len(made) == 2


class Visible(CountingScheduler):
    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    async def shows_other_users_jobs(self, executor):
        return self.answer


@pytest.mark.parametrize("answer,scope", [(True, "cluster"), (False, "user"), (None, "user")])
async def test_query_scope_asks_the_scheduler_once(monkeypatch, caplog, answer, scope):
    asked = []

    def get(kind):
        asked.append(kind)
        return Visible(answer)

    monkeypatch.setattr(visibility, "get_scheduler", get)
    monkeypatch.setattr(visibility, "_DECIDED", {})
    sudo = ["sudo", "-u", "{username}", "--"]
    log = logging.getLogger("test")
    with caplog.at_level(logging.WARNING):
        assert await visibility.query_scope("auto", "slurm", sudo, [], log) == scope
        assert await visibility.query_scope("auto", "slurm", sudo, [], log) == scope
    assert asked == ["slurm"]
    assert ("status_query_prefix" in caplog.text) is (scope == "user")


async def test_query_scope_needs_no_question_when_settled(monkeypatch):
    monkeypatch.setattr(visibility, "get_scheduler", lambda kind: pytest.fail("asked the scheduler"))
    log = logging.getLogger("test")
    sudo = ["sudo", "-u", "{username}", "--"]
    assert await visibility.query_scope("auto", "slurm", [], [], log) == "cluster"  # the hub's own jobs
    assert await visibility.query_scope("auto", "slurm", sudo, ["sudo", "-u", "ops"], log) == "cluster"
    assert await visibility.query_scope("user", "slurm", [], [], log) == "user"


def test_private_data_is_read_from_scontrol_show_config():
    from pw_spawner.schedulers.slurm import parse_private_data

    assert parse_private_data("AuthType = auth/munge\nPrivateData = jobs,usage\n") == {"jobs", "usage"}
    assert parse_private_data("PrivateData             = none\n") == set()
    assert parse_private_data("ClusterName = x\n") == set()


async def test_polls_at_hub_start_share_one_question(monkeypatch):
    asked = []

    class Slow(Visible):
        async def shows_other_users_jobs(self, executor):
            asked.append(1)
            await asyncio.sleep(0.05)
            return True

    monkeypatch.setattr(visibility, "get_scheduler", lambda kind: Slow(True))
    monkeypatch.setattr(visibility, "_DECIDED", {})
    monkeypatch.setattr(visibility, "_ASKING", {})
    sudo = ["sudo", "-u", "{username}", "--"]
    log = logging.getLogger("test")
    asks = [visibility.query_scope("auto", "slurm", sudo, [], log) for _ in range(10)]
    scopes = await asyncio.gather(*asks)
    assert scopes == ["cluster"] * 10 and len(asked) == 1
