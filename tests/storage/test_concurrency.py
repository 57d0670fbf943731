"""Several processes writing into one store at once lose nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from jib.storage import SCHEMA_VERSION, ChatStore

WRITER = r"""
import sys, time
from pathlib import Path
from jib import Chat, Message
from jib.storage import open_store
from jib.testing import EchoGenerator

url, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
store = open_store(url)
generator = EchoGenerator(model="demo")
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(count):
    # One transaction per chat: as much contention between the writers as possible.
    store.save(Chat(generator=generator, messages=[Message("user", f"{name} {i}")]), run="shared")
store.close()
"""


def run_writers(url: str, writers: int, each: int, tmp_path: Path) -> None:
    go = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"w{n}", str(each), str(go)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    time.sleep(0.5)  # let each writer open the store before the race starts (not required)
    go.touch()
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr


def test_concurrent_writer_processes_lose_nothing(
    store: ChatStore, store_url: str, tmp_path: Path
) -> None:
    writers = 2 if store.backend == "sqlite" else 4

    run_writers(store_url, writers, 500, tmp_path)

    assert store.count(run="shared") == writers * 500
    prompts = {d["messages"][0]["content"] for d in store.iter_dicts(run="shared")}
    assert prompts == {f"w{n} {i}" for n in range(writers) for i in range(500)}


def test_writers_creating_a_new_store_at_once_agree_on_one_schema(
    store_url: str, tmp_path: Path
) -> None:
    run_writers(store_url, 3, 5, tmp_path)

    from jib.storage import open_store

    with open_store(store_url) as store:
        assert store.count() == 15
        assert store.schema_version == SCHEMA_VERSION
