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


# ---- the trust boundary: what the hub compares with what it knows -------------------------------

from pw_spawner.status import (  # noqa: E402
    app_host,
    check_identity,
    clean_message,
    is_an_earlier_jobs_last_word,
    listener_uids,
    same_job,
)


def _record(**fields) -> ServiceStatus:
    record = {"JOB_STATUS": "RUNNING", "PORT": 9000, "JOB_ID": "7", **fields}
    return ServiceStatus.from_json(json.dumps(record))


def test_identity_is_the_submitted_job():
    check_identity(_record(), "7")
    check_identity(_record(JOB_ID="123.pbs.example.org"), "123.pbs")  # PBS's server suffix varies
    with pytest.raises(ServiceStatusError, match="not the submitted job 7"):
        check_identity(_record(JOB_ID="8"), "7")
    with pytest.raises(ServiceStatusError, match="JOB_ID is missing"):
        check_identity(_record(JOB_ID=None), "7")
    assert not same_job("17", "7")


def test_an_ended_earlier_jobs_record_is_only_waited_out():
    earlier = json.dumps({"JOB_STATUS": "CANCELLED", "JOB_ID": "3"})
    running = json.dumps({"JOB_STATUS": "RUNNING", "PORT": 9000, "JOB_ID": "3"})
    for text, waited in ((earlier, True), (running, False)):
        record = ServiceStatus.from_json(text)
        with pytest.raises(ServiceStatusError, match="JOB_ID is 3"):
            check_identity(record, "4")
        assert is_an_earlier_jobs_last_word(record) is waited


def test_the_hub_picks_the_host():
    # Loopback targets, and an admin's connect_host, whatever the job says.
    assert app_host(_record(HOST="evil.example"), on_hub_side=True, node="n1") == "127.0.0.1"
    assert app_host(_record(HOST="evil.example"), on_hub_side=False, node="n1",
                    connect_host="gw.example") == "gw.example"
    # A compute node: the scheduler's node; the job's HOST must name it.
    assert app_host(_record(HOST="node12.cluster.example"), on_hub_side=False, node="node12") == "node12"
    assert app_host(_record(HOST=None), on_hub_side=False, node="node12") == "node12"
    with pytest.raises(ServiceStatusError, match="scheduler runs the job on node12"):
        app_host(_record(HOST="node13"), on_hub_side=False, node="node12")
    with pytest.raises(ServiceStatusError, match="no node"):
        app_host(_record(HOST="node12"), on_hub_side=False, node=None)


def test_listener_uids_reads_proc_net_tcp(tmp_path):
    import os
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    try:
        port = server.getsockname()[1]
        assert listener_uids(port) == {os.geteuid()}
    finally:
        server.close()
    assert listener_uids(port) == set()
    table = tmp_path / "tcp"
    rest = "00000000:00000000 00:00000000 00000000"
    table.write_text("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
                     f"   0: 0100007F:1F41 00000000:0000 0A {rest}  1001 0 42\n"
                     f"   1: 0100007F:1F41 0100007F:9999 01 {rest}  1002 0 43\n")
    assert listener_uids(8001, [str(table)]) == {1001}  # only LISTEN (0A) counts


def test_messages_are_one_bounded_line():
    assert clean_message("a\nb\x1b[1m\u2028c") == "a b [1m c"
    assert len(clean_message("x" * 5000)) == 500
