"""Fixtures of the integration tests; the helpers live in testkit/flowtag.py (shared with
grafana/tests) and are re-exported here."""

from __future__ import annotations

import pytest

from testkit.flowtag import Flowtag, FlowWriter, file_source_head, free_port, http_ok, read_jsonl, wait_until  # noqa: F401 (the tests import them from here)


@pytest.fixture
def free_ports():
    return free_port
