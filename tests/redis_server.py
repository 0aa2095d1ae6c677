"""A real redis-server for the tests, on a free port of 127.0.0.1, stopped afterwards."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REDIS = shutil.which("redis-server")
needs_redis = pytest.mark.skipif(
    REDIS is None, reason="redis-server not installed (.ci/run installs Debian's redis-server)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(workdir: Path, *extra: str, port: int | None = None) -> Iterator[int]:
    """Start redis-server (on `port`, or a free one); yield its port once it says it is ready;
    stop it."""
    assert REDIS is not None
    port = port or free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--daemonize", "no", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # blocks until the server reports readiness (or exits)
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError(f"redis-server exited with {proc.wait()}")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
