"""The fault and security suite's counters, and the one summary table printed at the end of a run.

A small pytest plugin (registered in tests/conftest.py). Every case of the suite (marked ``faults``)
counts what went wrong in a few named kinds, and the run ends with one table of the totals. A
harmful count above zero fails the run even if the case that made it forgot to assert it.

In a test, take the ``faults`` fixture::

    @pytest.mark.faults
    async def test_stop_while_queued(faults, ...):
        faults.case()                              # one case run (counted in "cases run")
        ...
        faults.record("orphans", len(left), f"jobs still queued: {left}")
        faults.check("orphans")                    # fails this test, naming it, if it counted any

``record(kind, n=1, detail="")`` adds ``n`` (0 is fine: it still shows the kind was checked) and
keeps ``detail`` for the summary; ``check(*kinds)`` asserts this test's counts of those kinds (all
harmful kinds when none is named) are 0, with the details in the message; ``count(kind)`` returns
this test's count. A fixture of wider scope (a module's hub) takes ``faults_session`` and passes
``case=`` itself. The kinds are those of ``KINDS``; an unknown kind is an error, so that a typo
cannot hide a count:

- ``cases run``: cases exercised (not harmful);
- ``orphans``: jobs (or job processes) still alive that nobody wants any more;
- ``lost sessions``: running sessions that a fault ended or made unreachable;
- ``routes redirected``: proxy routes that point somewhere other than the server's own job;
- ``injections``: user input that changed what a script line means, or made the hub fail (500);
- ``cross-user accesses``: a request that reached a server as someone other than its owner;
- ``secrets found``: a token or app secret where another account can read it (argv, files).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import pytest

CASES = "cases run"
KINDS = (CASES, "orphans", "lost sessions", "routes redirected", "injections", "cross-user accesses",
         "secrets found")
HARMFUL = KINDS[1:]
#: How many details of one kind the summary shows (all of them stay in each test's own failure).
_SHOWN = 8


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown fault count {kind!r} (known: {', '.join(KINDS)})")
    return kind


@dataclass
class FaultCounters:
    """The session's counts: totals per kind, and per case (a test's node id) with their details."""

    totals: Counter[str] = field(default_factory=Counter)
    by_case: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    details: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    def case(self, case: str) -> None:
        """Count one case run."""
        self.record(CASES, 1, case=case)

    def record(self, kind: str, n: int = 1, detail: str = "", *, case: str) -> None:
        """Add ``n`` to ``kind`` for ``case``; ``detail`` says what was found."""
        _check_kind(kind)
        if n < 0:
            raise ValueError(f"a count only grows: {kind} {n}")
        self.totals[kind] += n
        self.by_case[case][kind] += n
        if n and detail and kind != CASES:
            self.details[kind].append((case, detail))

    def count(self, kind: str, *, case: str) -> int:
        return self.by_case[case][_check_kind(kind)]

    def check(self, *kinds: str, case: str) -> None:
        """Assert the case's counts of ``kinds`` (default: every harmful kind) are all 0."""
        bad = {k: self.by_case[case][k] for k in (kinds or HARMFUL) if _check_kind(k) != CASES
               and self.by_case[case][k]}
        if bad:
            found = [f"{kind}: {detail}" for kind in bad for c, detail in self.details[kind] if c == case]
            pytest.fail(f"{case}: " + ", ".join(f"{k} = {n}" for k, n in bad.items())
                        + ("\n  " + "\n  ".join(found) if found else ""), pytrace=False)

    @property
    def harmful(self) -> int:
        return sum(self.totals[k] for k in HARMFUL)

    def table(self) -> list[str]:
        width = max(len(k) for k in KINDS)
        lines = [f"{'count'.ljust(width)}  value", f"{'-' * width}  -----"]
        lines += [f"{kind.ljust(width)}  {self.totals[kind]}" for kind in KINDS]
        for kind in HARMFUL:
            for case, detail in self.details[kind][:_SHOWN]:
                lines.append(f"  {kind} in {case}: {detail[:300]}")
            if len(self.details[kind]) > _SHOWN:
                lines.append(f"  ... and {len(self.details[kind]) - _SHOWN} more {kind}")
        return lines


@dataclass
class CaseFaults:
    """The ``faults`` fixture: the session's counters, bound to one test."""

    counters: FaultCounters
    name: str

    def case(self) -> None:
        self.counters.case(self.name)

    def record(self, kind: str, n: int = 1, detail: str = "") -> None:
        self.counters.record(kind, n, detail, case=self.name)

    def count(self, kind: str) -> int:
        return self.counters.count(kind, case=self.name)

    def check(self, *kinds: str) -> None:
        self.counters.check(*kinds, case=self.name)


_KEY = pytest.StashKey[FaultCounters]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = FaultCounters()


@pytest.fixture(scope="session")
def faults_session(pytestconfig: pytest.Config) -> FaultCounters:
    """The session-wide counters (for fixtures wider than one test; pass ``case=``)."""
    return pytestconfig.stash[_KEY]


@pytest.fixture
def faults(faults_session: FaultCounters, request: pytest.FixtureRequest) -> CaseFaults:
    """This test's view of the counters: ``case()``, ``record(kind, n, detail)``, ``check(*kinds)``."""
    return CaseFaults(faults_session, request.node.nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    counters = session.config.stash.get(_KEY, None)
    if counters is not None and counters.harmful and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    counters = config.stash.get(_KEY, None)
    if counters is None or not counters.totals[CASES]:
        return
    terminalreporter.section("fault and security suite")
    for line in counters.table():
        terminalreporter.write_line(line)
    if counters.harmful:
        terminalreporter.write_line(f"FAILED: {counters.harmful} harmful count(s) above zero", red=True)


__all__ = ["CASES", "HARMFUL", "KINDS", "CaseFaults", "FaultCounters"]
