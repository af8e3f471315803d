"""A real PostgreSQL server for tests: Debian's server binaries, a cluster of its own in a
temporary folder, listening on 127.0.0.1 only, password (SCRAM) authentication for one role.

`scripts/setup.sh` installs the `postgresql` package. The server refuses to run as root, so when
the tests run as root the cluster is made and started as the `postgres` user the package creates.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import tempfile
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from testkit.flowtag import free_port, wait_until


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    bin: Path
    socket_dir: Path

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        """Run SQL as the test role; the output rows, `|`-separated."""
        env = {**os.environ, "PGPASSWORD": self.password}
        out = subprocess.run([str(self.bin / "psql"), "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database, "-At", "-c", sql],
                             env=env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        return out.stdout

    def create_database(self, name: str) -> str:
        self.psql("postgres", f'CREATE DATABASE "{name}"')
        return name


def server_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql (scripts/setup.sh installs the postgresql package)")
    return Path(found[-1]).parent


@contextlib.contextmanager
def postgres_server(tmp: Path) -> Iterator[Postgres]:
    """Start a cluster (in `tmp`, or, as root, in a folder of the `postgres` user: pytest's
    folders are closed to other users); yield it; stop it."""
    bin_dir = server_bin()
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        root = Path(tempfile.mkdtemp(prefix="flowtag-pg-"))
        os.chmod(root, 0o700)
        shutil.chown(root, "postgres", "postgres")
    else:
        root = tmp / "pg"
        root.mkdir()
    data, sockets, pwfile = root / "data", root / "run", root / "pw"
    password = secrets.token_urlsafe(18)
    subprocess.run([*as_user, "sh", "-c", f"mkdir {sockets} && umask 077 && cat > {pwfile}"], input=password, text=True, check=True, timeout=30)
    port = free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "flowtag", "--auth=scram-sha-256", f"--pwfile={pwfile}",
                    "-E", "UTF8", "--locale=C"], check=True, capture_output=True, timeout=120)
    log = root / "server.log"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start",
                    "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={sockets} -c max_connections=100"],
                   check=True, capture_output=True, timeout=120)
    server = Postgres("127.0.0.1", port, "flowtag", password, bin_dir, sockets)
    try:
        wait_until(lambda: _ready(server), 60, "PostgreSQL")
        yield server
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, timeout=120)
        if as_user:
            shutil.rmtree(root, ignore_errors=True)


def _ready(server: Postgres) -> bool:
    try:
        return server.psql("postgres", "SELECT 1").strip() == "1"
    except RuntimeError:
        return False
