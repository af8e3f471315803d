"""A real MLflow tracking server for tests: the pinned mlflow on 127.0.0.1, a sqlite store (or a
PostgreSQL database, `testkit.postgres`) and proxied artifacts in a temporary folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from testkit.flowtag import free_port, http_ok, wait_until


@contextlib.contextmanager
def mlflow_server(tmp: Path, backend: str | None = None) -> Iterator[str]:
    """Start a server whose store lives in `tmp` (or in the `backend` database URI); yield its
    URI; stop it."""
    port = free_port()
    log = open(tmp / "mlflow.log", "wb")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", backend or f"sqlite:///{tmp / 'mlflow.db'}", "--artifacts-destination", str(tmp / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        wait_until(lambda: proc.poll() is not None or http_ok(f"http://127.0.0.1:{port}/health"), 120, "the MLflow server")
        assert proc.poll() is None, (tmp / "mlflow.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
