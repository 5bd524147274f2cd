import io
import json
import logging

from launchq.log import configure, get_logger


def test_log_lines_are_cloud_logging_json() -> None:
    stream = io.StringIO()
    configure(logging.INFO, stream)
    get_logger("launchq.test").info("job submitted", item_id="i-1", job_name=None, attempt=2)
    get_logger("launchq.test").debug("not shown")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["severity"] == "INFO"
    assert entry["message"] == "job submitted"
    assert entry["item_id"] == "i-1"
    assert entry["attempt"] == 2
    assert "job_name" not in entry  # None fields are dropped, not logged as null


def test_exceptions_carry_their_traceback() -> None:
    stream = io.StringIO()
    configure(logging.INFO, stream)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("launchq.test").exception("failed", item_id="i-2")
    entry = json.loads(stream.getvalue())
    assert entry["severity"] == "ERROR"
    assert "ValueError: boom" in entry["exception"]
