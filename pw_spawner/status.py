"""The job's status record (service.json), the job lifecycle, and the trust boundary between them.

service.json is the contract between a job and the hub: the job writes it atomically (write, then
rename) with mode 0600 in the job's own 0700 directory; the hub only reads it. Its fields: URL
(``/me`` for http, ``/sme`` for https), PORT, SLUG (the app's landing path), JOB_STATUS
(case-insensitive on read), ERROR_MESSAGE, HOST and JOB_ID.

Everything in it is written by the job's owner, a cluster user who may be hostile or whose shell
setup is simply broken. This module is the one place the hub accepts it: the file is read capped
(:data:`MAX_SERVICE_BYTES`, by the executor), every field is typed and checked here
(:meth:`ServiceStatus.from_json`), and :func:`check_identity` and :func:`app_host` compare it with
what the hub knows from elsewhere: the id it submitted, the node the scheduler reported. Nothing
the job writes picks the host a route points to, and a port is accepted only in the unprivileged
range and, on the hub host, only when the job's own account listens on it (:func:`listener_uids`).
"""

from __future__ import annotations

import enum
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .templates.job_helper import listening_sockets

#: The most of service.json the hub reads; a real record is a few hundred bytes.
MAX_SERVICE_BYTES = 64 * 1024
#: How much of a job's message reaches the spawn page and the hub's log.
MAX_MESSAGE_CHARS = 500
MIN_PORT, MAX_PORT = 1024, 65535


class JobState(enum.Enum):
    """Where a job is in its life, as the hub sees it."""

    SUBMITTED = "submitted"
    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: The scheduler could not be asked, or its answer could not be read: not a reason to give up.
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)

    @property
    def active(self) -> bool:
        return self in (JobState.SUBMITTED, JobState.PENDING, JobState.STARTING, JobState.RUNNING)


_STATUS_WORDS = {
    "submitted": JobState.SUBMITTED,
    "pending": JobState.PENDING,
    "queued": JobState.PENDING,
    "starting": JobState.STARTING,
    "running": JobState.RUNNING,
    "completed": JobState.COMPLETED,
    "failed": JobState.FAILED,
    "error": JobState.FAILED,
    "cancelled": JobState.CANCELLED,
    "canceled": JobState.CANCELLED,
}

# A host name or an IPv4 address: no port, path, user part or fragment can ride along.
_HOST_RE = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,252})\Z")
# Scheduler job ids: Slurm's digits (and array/het forms), PBS's "123.server" and "123[4].server".
_JOB_ID_RE = re.compile(r"\A[A-Za-z0-9_.\[\]+-]{1,64}\Z")
# A landing path below the server's prefix. No braces (JupyterHub formats default_url), no
# backslash or blank, no scheme or "//" (another host), no ".." segment (out of the prefix).
_SLUG_RE = re.compile(r"\A[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,512}\Z")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")


class ServiceStatusError(ValueError):
    """service.json exists but is not a record the hub accepts; ``field`` names the culprit."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field} {message}")


def clean_message(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A job's free text fit for one line of a page or a log: control characters become blanks."""
    flat = _CONTROL_RE.sub(" ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


#: The range of ENDS_AT the hub takes: from 2020 to about 2242 (2**33 s), no later.
EARLIEST_END, LATEST_END = 1_577_836_800, 2**33
#: How deep service.json may nest; a record is one flat object.
MAX_NESTING = 16


def _nesting(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, strings left out.

    Checked before parsing: a deeply nested document would make the JSON parser raise
    RecursionError, which on CPython 3.11 can leave the interpreter's recursion accounting off
    (later compiles fail with "AST constructor recursion depth mismatch") — in the hub process.
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ServiceStatusError("service.json", f"holds {name}, which is not JSON")


def _text_field(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ServiceStatusError(name, f"must be a string, not {type(value).__name__}")
    return value


def _port(value: Any) -> int | None:
    if value is None or value == "":
        return None
    # bool is an int in Python, and "8888.9" or 8888.9 is not a port.
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ServiceStatusError("PORT", f"must be an integer from {MIN_PORT} to {MAX_PORT}, "
                                         f"not {type(value).__name__}")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,5}", value):
            raise ServiceStatusError("PORT", f"must be an integer from {MIN_PORT} to {MAX_PORT}")
        value = int(value)
    if not MIN_PORT <= value <= MAX_PORT:
        raise ServiceStatusError("PORT", f"must be an integer from {MIN_PORT} to {MAX_PORT}, not {value}")
    return value


def _slug(value: str | None) -> str:
    slug = (value or "").strip()
    if not _SLUG_RE.match(slug) or slug.startswith("//") or "://" in slug:
        raise ServiceStatusError("SLUG", "must be a path below the server's URL (letters, digits and "
                                         "/._~-?=&%+:@ only; no braces, scheme or host)")
    if ".." in slug.split("?", 1)[0].split("/"):
        raise ServiceStatusError("SLUG", "must not climb out of the server's URL with '..'")
    return slug


@dataclass(frozen=True)
class ServiceStatus:
    """One reading of service.json, every field checked for its type and form."""

    job_status: JobState
    url: str = "/me"
    port: int | None = None
    slug: str = ""
    host: str | None = None
    error_message: str = ""
    job_id: str | None = None
    #: When the job's walltime ends (seconds since the epoch), once the scheduler has warned it
    #: (Slurm's ``--signal``); None before, or where the scheduler sends no warning.
    ends_at: int | None = None

    @property
    def scheme(self) -> str:
        """``https`` when the job said ``/sme``, otherwise ``http``."""
        return "https" if self.url == "/sme" else "http"

    @classmethod
    def from_json(cls, text: str) -> ServiceStatus:
        """Parse and check a record; :class:`ServiceStatusError` names the field that is wrong."""
        if len(text) > MAX_SERVICE_BYTES:
            raise ServiceStatusError("service.json", f"is larger than {MAX_SERVICE_BYTES} bytes")
        if _nesting(text) > MAX_NESTING:
            raise ServiceStatusError("service.json", "is nested too deeply")
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except json.JSONDecodeError as exc:
            raise ServiceStatusError("service.json", f"is not JSON ({exc.msg} at {exc.pos})") from None
        except RecursionError:
            raise ServiceStatusError("service.json", "is nested too deeply") from None
        if not isinstance(data, dict):
            raise ServiceStatusError("service.json", "is not a JSON object")
        # Keys are matched without regard to case: jobs written by hand (and older ones) vary.
        fields = {str(k).upper(): v for k, v in data.items()}
        word = (_text_field(fields, "JOB_STATUS") or "").strip().lower()
        if word not in _STATUS_WORDS:
            raise ServiceStatusError("JOB_STATUS", f"must be one of {', '.join(sorted(_STATUS_WORDS))}")
        url = (_text_field(fields, "URL") or "/me").strip().lower()
        if url not in ("/me", "/sme"):
            raise ServiceStatusError("URL", "must be /me (http) or /sme (https)")
        host = _text_field(fields, "HOST")
        if host is not None and host != "" and not _HOST_RE.match(host):
            raise ServiceStatusError("HOST", "must be a host name or an IPv4 address (no port, path or '#')")
        job_id = fields.get("JOB_ID")
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            job_id = str(job_id)
        if job_id is not None and job_id != "":
            if not isinstance(job_id, str) or not _JOB_ID_RE.match(job_id):
                raise ServiceStatusError("JOB_ID", "must be a scheduler job id")
        message = fields.get("ERROR_MESSAGE")
        if message is not None and not isinstance(message, str):
            raise ServiceStatusError("ERROR_MESSAGE", f"must be a string, not {type(message).__name__}")
        ends_at = fields.get("ENDS_AT")
        if ends_at is not None and (not isinstance(ends_at, int) or isinstance(ends_at, bool)
                                    or not EARLIEST_END <= ends_at <= LATEST_END):
            raise ServiceStatusError("ENDS_AT", "must be a time in whole seconds since the epoch")
        return cls(
            job_status=_STATUS_WORDS[word],
            url=url,
            port=_port(fields.get("PORT")),
            slug=_slug(_text_field(fields, "SLUG")),
            host=host or None,
            error_message=clean_message(message or ""),
            job_id=job_id or None,
            ends_at=ends_at,
        )

    def to_json(self) -> str:
        data: dict[str, Any] = {k.upper(): v for k, v in asdict(self).items()}
        data["JOB_STATUS"] = self.job_status.name
        return json.dumps(data, indent=1)


def same_job(reported: str, submitted: str) -> bool:
    """Whether a job id a job reported is the one the hub submitted.

    PBS prints ``123.server`` at submit while the job may see ``123.server.domain``: the sequence
    number before the first dot is what identifies it on one cluster.
    """
    return reported == submitted or reported.split(".", 1)[0] == submitted.split(".", 1)[0]


def check_identity(status: ServiceStatus, job_id: str) -> None:
    """Refuse a record that is not this job's: stale from an earlier job, or forged."""
    if status.job_id is None:
        raise ServiceStatusError("JOB_ID", f"is missing (the hub submitted job {job_id})")
    if not same_job(status.job_id, job_id):
        raise ServiceStatusError("JOB_ID", f"is {status.job_id}, not the submitted job {job_id}")


def is_an_earlier_jobs_last_word(status: ServiceStatus) -> bool:
    """Whether a record :func:`check_identity` refused is only another job's last word (an ended
    job's, of this server).

    Such a record names its own job and does not claim RUNNING: the hub waits for the current
    job's record instead of failing. A RUNNING record of another job is refused: it would route.
    """
    return status.job_id is not None and status.job_status is not JobState.RUNNING


def _short(name: str) -> str:
    return name.lower().rstrip(".").split(".", 1)[0]


def app_host(status: ServiceStatus, *, on_hub_side: bool, node: str | None, connect_host: str = "") -> str:
    """The host the hub (or its tunnel) connects to for the app; never a host the job chose.

    ``on_hub_side``: the app listens where the executor runs (the hub host for the ``local``
    target, the login node for ``controller``), so it is loopback. Otherwise it is the node the
    scheduler reported, and the job's HOST must name that node (its short name, or its full name).
    An admin's ``connect_host`` wins over both.
    """
    if connect_host:
        return connect_host
    if on_hub_side:
        return "127.0.0.1"
    if not node:
        raise ServiceStatusError("HOST", "cannot be checked: the scheduler reported no node for the job")
    if status.host and status.host not in ("0.0.0.0",) and _short(status.host) != _short(node):
        raise ServiceStatusError("HOST", f"is {status.host}, but the scheduler runs the job on {node}")
    return node


def listener_uids(port: int, proc_net: Iterable[str] | None = None) -> set[int]:
    """The uids of the sockets listening on TCP ``port`` of this host (loopback or any address).

    Every account may ask (netlink's sock_diag, or /proc/net/tcp where that is not allowed, or the
    tables ``proc_net`` names): on the hub host this tells whether a port a job reported is held by
    the job's own account, or by the hub, its proxy, or anyone else. The job's helper asks the same
    question, with the same code, before it says RUNNING.
    """
    return {uid for uid, _ in listening_sockets(port, proc_net)}


def write_service_json(job_dir: str | os.PathLike, status: ServiceStatus) -> Path:
    """Write service.json the way the job does: 0600, whole, renamed into place.

    Used by Python-side launchers and by tests; the job script's helper follows the same rules.
    """
    directory = Path(job_dir)
    fd, tmp = tempfile.mkstemp(prefix=".service.json.", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(status.to_json())
        target = directory / "service.json"
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
