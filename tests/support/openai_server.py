"""Start `transformers serve` (a real OpenAI-compatible server) on 127.0.0.1 for tests and docs.

It serves one model directory on CPU, offline, and is stopped when the block ends:

    with run_transformers_serve(model_dir, log_path) as server:
        ...  # server.url ("http://127.0.0.1:PORT/v1"), server.model (the name to request)

The server is pinned to that one model, so requests must name it as `server.model`: the
directory's path, or `name` when one is given (the server then runs beside a link of that name).
Run it by hand, on the tiny test model, with `python -m tests.support.openai_server [PORT] [NAME]`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

STARTUP_TIMEOUT = 120.0
PORT_ATTEMPTS = 3
_LAUNCH = (
    "import sys; from transformers.cli.transformers import main; "
    "sys.argv[0] = 'transformers'; sys.exit(main())"
)


@dataclass
class RunningServer:
    """A started server: base URL ending in `/v1`, the model name it serves, and its log file."""

    url: str
    model: str
    log: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _PortTaken(RuntimeError):
    """The server could not bind its port: something else took it after it was chosen."""


def _wait_until_healthy(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if process.poll() is not None:
            output = log.read_text(errors="replace")[-3000:]
            message = f"transformers serve exited with {process.returncode}:\n{output}"
            if "address already in use" in output.lower():
                raise _PortTaken(message)
            raise RuntimeError(message)
        try:
            # trust_env=False: a proxy from the environment must not see loopback traffic.
            if httpx.get(f"{url}/health", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"transformers serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.25)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


def _start(model: str, port: int, log: Path, workdir: str) -> subprocess.Popen[bytes]:
    """Launch the server and wait until it answers; stop it again if it does not."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }
    command = [sys.executable, "-c", _LAUNCH, "serve", model]
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    command += ["--default-seed", "0"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=workdir
        )
    try:
        _wait_until_healthy(process, f"http://127.0.0.1:{port}", log)
    except BaseException:
        _stop(process)
        raise
    return process


@contextmanager
def run_transformers_serve(
    model_dir: Path, log: Path, *, port: int | None = None, name: str | None = None
) -> Iterator[RunningServer]:
    """Run `transformers serve` on `model_dir` until the block ends; wait until /health answers.

    Args:
        model_dir: a saved model and tokenizer (`tests.support.tiny_model.build_tiny_model`).
        log: where the server's output goes.
        port: the port on 127.0.0.1; a free one when not given (another is tried if that one
            is taken before the server binds it).
        name: the model name clients use; the directory's path when not given.
    """
    with tempfile.TemporaryDirectory(prefix="jib-serve-") as workdir:
        model = str(model_dir)
        if name is not None:
            (Path(workdir) / name).symlink_to(Path(model_dir).resolve(), target_is_directory=True)
            model = name
        attempts = 1 if port else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            chosen = port or free_port()
            try:
                process = _start(model, chosen, log, workdir)
                break
            except _PortTaken:
                if attempt == attempts:
                    raise
        try:
            yield RunningServer(f"http://127.0.0.1:{chosen}/v1", model, log)
        finally:
            _stop(process)


def main(argv: list[str]) -> None:
    """Serve the tiny test model until interrupted: `[PORT] [NAME]` (8000, tiny-chat)."""
    from tests.support.tiny_model import build_tiny_model

    port = int(argv[0]) if argv else 8000
    name = argv[1] if len(argv) > 1 else "tiny-chat"
    with tempfile.TemporaryDirectory(prefix="jib-tiny-") as directory:
        model_dir = build_tiny_model(Path(directory) / "model")
        log = Path(directory) / "server.log"
        with run_transformers_serve(model_dir, log, port=port, name=name) as server:
            print(f"serving {server.model!r} at {server.url}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
