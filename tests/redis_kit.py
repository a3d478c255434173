"""A real ``redis-server`` for tests: started on a free loopback port in a temporary folder, stopped after."""

import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(folder: Path, *extra_args: str, start_timeout_s: float = 10.0, port: int | None = None):
    """Runs ``redis-server`` on 127.0.0.1 and yields its URL (``redis://127.0.0.1:PORT/0``).

    Args:
        folder: Its working folder (persistence files, log).
        *extra_args: More redis-server options (e.g. ``"--appendonly", "yes"``).
        start_timeout_s: How long to wait for it to answer.
        port: The port (a free one when None); the same folder and port start it again after a stop.

    Raises:
        RuntimeError: redis-server is not installed (``scripts/setup.sh --test``
            installs it) or did not start; names its log.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run scripts/setup.sh --test (Debian package redis-server)")
    port = port or free_port()
    log = folder / "redis.log"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(folder), "--save", ""]
    args += ["--logfile", str(log), *extra_args]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}; see {log}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
