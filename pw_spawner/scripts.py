"""Rendering the submit script: scheduler directives, environment, app launch.

Shell quoting lives here and only here (the ``q`` filter of the templates is :func:`shlex.quote`;
the ``comment`` filter keeps free text inside a comment line).
Directive values come from admin-written profiles (checked by :mod:`pw_spawner.profiles`) and from
validated numbers, never from free text a user typed. Templates are Jinja2 files; an admin may put
files of the same names in a directory of their own to override them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .apps import AppLaunch
from .config_schema import ENV_NAME_RE, LINE_BREAKING_CHARS
from .options import Selection
from .profiles import JobSpec
from .schedulers import get_scheduler

_DIRECTIVE_WORD = re.compile(r"\A[A-Za-z0-9_.@+~-]+\Z")
TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class ScriptRequest:
    """Everything that goes into one script."""

    selection: Selection
    scheduler: str
    job_name: str
    job_dir: str
    app: AppLaunch
    bind_ip: str = "127.0.0.1"
    #: The hub's environment for the server; carries the API token, so it is exported inside the
    #: script (which travels on stdin) and nowhere else.
    hub_env: Mapping[str, str] = field(default_factory=dict)
    start_timeout: int = 300
    extra_directives: Sequence[str] = ()
    #: Shell lines the admin trusts, run as written before the environment is set up.
    setup_lines: Sequence[str] = ()
    #: The site's settings of the scheduler (Grid Engine's parallel environment...).
    scheduler_settings: Mapping[str, Any] = field(default_factory=dict)
    #: Seconds before the walltime ends at which the job asks its scheduler for a warning signal
    #: and records the coming end in service.json (0: no warning).
    walltime_warning_s: int = 0


def safe_job_name(text: str, limit: int = 64) -> str:
    """A job name every scheduler takes (letters, digits, ``_ . -``), distinct for distinct ``text``.

    Replacing characters or cutting to ``limit`` could give two servers one name ("a b" and
    "a_b"), and a start cancels the unfinished jobs that carry its name. So a name that had to
    change ends in a short hash of the text it came from; names that need no change keep it.
    """
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", text)
    if clean == text and len(clean) <= limit:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{clean[:limit - len(digest) - 1]}-{digest}"


DEFAULT_JOB_NAME_TEMPLATE = "pw-{username}{servername_suffix}"


def job_name_for(username: str, servername: str = "", template: str = DEFAULT_JOB_NAME_TEMPLATE) -> str:
    """The scheduler name of (user, server)'s job: the template's readable text and a hash of both.

    The hash makes names distinct by construction: alice's server "x" and user "alice-x" once
    shared ``pw-alice-x`` (and so a job directory, and a start cancelled the other's job).
    """
    identity = hashlib.sha256(f"{username}\0{servername}".encode()).hexdigest()[:10]
    readable = template.format(username=username, servername=servername,
                               servername_suffix=f"-{servername}" if servername else "")
    return f"{safe_job_name(readable, limit=64 - len(identity) - 1)}-{identity}"


def shell_quote(value: object) -> str:
    """One shell word, whatever the value holds."""
    return shlex.quote(str(value))


_LINE_BREAKING = re.compile(LINE_BREAKING_CHARS + "+")


def comment_text(value: object) -> str:
    """Text that stays inside one ``#`` comment line: newlines and control characters become spaces.

    For admin-written free text (display names, a profile's multi-line description) in comments.
    """
    return _LINE_BREAKING.sub(" ", str(value)).strip()


def directives(scheduler: str, job: JobSpec, name: str, output: str) -> list[str]:
    """The directive lines of one scheduler kind (its module writes them); none for ``local``."""
    return get_scheduler(scheduler).directives(job, name, output)


def _environment(template_dirs: Sequence[str | Path]) -> jinja2.Environment:
    return _cached_environment(tuple(map(str, template_dirs)))


# One environment per list of template directories: building one recompiles the templates
# (~15 ms a script). Jinja's auto_reload still notices an admin's edit of a template file.
@functools.lru_cache(maxsize=16)
def _cached_environment(template_dirs: tuple[str, ...]) -> jinja2.Environment:
    loader = jinja2.FileSystemLoader([*template_dirs, str(TEMPLATE_DIR)])
    env = jinja2.Environment(loader=loader, autoescape=False, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["q"] = shell_quote
    env.filters["comment"] = comment_text
    return env


def render_script(request: ScriptRequest, template_dirs: Sequence[str | Path] = ()) -> str:
    """The submit script for ``request``; ``template_dirs`` are searched before the built-in ones."""
    # The job name and directory stand in directive lines, which the scheduler splits on blanks.
    if not _DIRECTIVE_WORD.match(request.job_name):
        raise ValueError(f"job name {request.job_name!r} has characters a scheduler cannot take")
    if not _DIRECTIVE_WORD.match(request.job_dir.replace("/", "")):
        raise ValueError(f"job directory {request.job_dir!r} must be a path without blanks")
    for name in request.hub_env:
        if not ENV_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
    output = f"{request.job_dir}/job.out"
    scheduler = get_scheduler(request.scheduler, settings=request.scheduler_settings)
    lines = scheduler.directives(request.selection.job, request.job_name, output)
    warning = scheduler.warning_directives(request.selection.job, request.walltime_warning_s)
    lines += warning
    if scheduler.directive_prefix:
        lines += [f"{scheduler.directive_prefix} {line}" for line in request.extra_directives]
    template = _environment(template_dirs).get_template("job.sh.j2")
    return template.render(
        directives=lines,
        job_name=request.job_name,
        job_dir=request.job_dir,
        selection=request.selection,
        app=request.app,
        bind_ip=request.bind_ip,
        hub_env=dict(request.hub_env),
        start_timeout=int(request.start_timeout),
        setup_lines=list(request.setup_lines),
        # The local runner has just checked (and made 0700) the job directory, as the job's
        # account on this host: the job need not start its helper to check it again.
        runner_checked_dir=scheduler.submit_checks_job_dir,
        job_id_variable=scheduler.job_id_variable,
        walltime_warning_s=request.walltime_warning_s if warning else 0,
    )
