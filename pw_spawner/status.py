"""The job's status record (service.json) and the job lifecycle.

service.json is the contract between a job and the hub: the job's launcher writes it atomically (write,
then rename) with mode 0600 in the job's own directory; the hub only reads it. Field names and
meanings are the seed's: URL (``/me`` for http, ``/sme`` for https), PORT, SLUG (the app's landing
path), JOB_STATUS (case-insensitive on read), ERROR_MESSAGE; plus HOST and JOB_ID.
"""

from __future__ import annotations

import enum
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


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


class ServiceStatusError(ValueError):
    """service.json exists but is not a status record."""


@dataclass(frozen=True)
class ServiceStatus:
    """One reading of service.json."""

    job_status: JobState
    url: str = "/me"
    port: int | None = None
    slug: str = ""
    host: str | None = None
    error_message: str = ""
    job_id: str | None = None

    @property
    def scheme(self) -> str:
        """``https`` when the job said ``/sme``, otherwise ``http``."""
        return "https" if self.url.strip().lower() == "/sme" else "http"

    @classmethod
    def from_json(cls, text: str) -> ServiceStatus:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ServiceStatusError(f"service.json is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ServiceStatusError("service.json is not a JSON object")
        # Keys are matched without regard to case: jobs written by hand (and the seed's) vary.
        fields = {str(k).upper(): v for k, v in data.items()}
        word = str(fields.get("JOB_STATUS") or "").strip().lower()
        if word not in _STATUS_WORDS:
            raise ServiceStatusError(f"service.json has an unknown JOB_STATUS {word!r}")
        port = fields.get("PORT")
        if port in (None, ""):
            port = None
        else:
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise ServiceStatusError(f"service.json has a bad PORT {port!r}") from None
            if not 0 < port < 65536:
                raise ServiceStatusError(f"service.json has a bad PORT {port!r}")
        return cls(
            job_status=_STATUS_WORDS[word],
            url=str(fields.get("URL") or "/me"),
            port=port,
            slug=str(fields.get("SLUG") or ""),
            host=str(fields["HOST"]) if fields.get("HOST") else None,
            error_message=str(fields.get("ERROR_MESSAGE") or ""),
            job_id=str(fields["JOB_ID"]) if fields.get("JOB_ID") not in (None, "") else None,
        )

    def to_json(self) -> str:
        data: dict[str, Any] = {k.upper(): v for k, v in asdict(self).items()}
        data["JOB_STATUS"] = self.job_status.name
        return json.dumps(data, indent=1)


def write_service_json(job_dir: str | os.PathLike, status: ServiceStatus) -> Path:
    """Write service.json the way the job's launcher does: 0600, whole, renamed into place.

    Used by Python-side launchers and by tests; the shell launcher in the job script follows the
    same rules.
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
