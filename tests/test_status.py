"""service.json: reading the seed's fields (any case), and writing it atomically with mode 0600."""

from __future__ import annotations

import json
import stat

import pytest

from pw_spawner.status import JobState, ServiceStatus, ServiceStatusError, write_service_json


def test_seed_fields_case_insensitive():
    text = json.dumps({"url": "/sme", "port": "8443", "slug": "rstudio", "job_status": "Running",
                       "error_message": "", "host": "node7"})
    status = ServiceStatus.from_json(text)
    assert status.job_status is JobState.RUNNING
    assert status.port == 8443 and status.scheme == "https" and status.slug == "rstudio"
    assert status.host == "node7"


@pytest.mark.parametrize("word", ["FAILED", "failed", "Error"])
def test_failed_with_message(word):
    status = ServiceStatus.from_json(json.dumps({"JOB_STATUS": word, "ERROR_MESSAGE": "no module x"}))
    assert status.job_status is JobState.FAILED and status.error_message == "no module x"
    assert status.scheme == "http"


@pytest.mark.parametrize("text", ["", "{", "[]", '{"JOB_STATUS": "dancing"}',
                                  '{"JOB_STATUS": "RUNNING", "PORT": "http"}',
                                  '{"JOB_STATUS": "RUNNING", "PORT": 70000}'])
def test_bad_records_raise(text):
    with pytest.raises(ServiceStatusError):
        ServiceStatus.from_json(text)


def test_write_is_0600_and_round_trips(tmp_path):
    status = ServiceStatus(JobState.RUNNING, port=8888, host="127.0.0.1", slug="lab", job_id="12")
    path = write_service_json(tmp_path, status)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ServiceStatus.from_json(path.read_text()) == status
    assert [p.name for p in tmp_path.iterdir()] == ["service.json"]
