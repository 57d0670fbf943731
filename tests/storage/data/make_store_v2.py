"""How `store-v2.db` was made: by jib at store schema version 2 (the code before issue 18's store,
commit fcafbc4), so the tests open a store exactly as that jib left it.

    git archive fcafbc4 src | tar -x -C /tmp/old
    cd tests/storage/data && PYTHONPATH=/tmp/old/src python make_store_v2.py store-v2.db

Not a test: it must run with that jib, not this one.
"""

import sqlite3
import sys
from datetime import datetime, timezone

from jib import Chat, Completion, GenerateParams, Message, StoredError, Usage
from jib.storage import SCHEMA_VERSION, open_store
from jib.testing import EchoGenerator

assert SCHEMA_VERSION == 2, "run this with the jib of store schema version 2"
path = sys.argv[1]
store = open_store(path)
moment = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
chat = Chat(
    generator=EchoGenerator(model="demo"),
    params=GenerateParams(temperature=0.5),
    messages=[Message("system", "Be brief."), Message("user", "Héllo")],
    generated=[Message("assistant", "Héllo")],
    stop_reason="stop",
    usage=Usage(3, 1),
    latency_ms=1.5,
    attempts=1,
    cost_usd=0.25,
    metadata={"tags": ["old"], "prompt_id": "q1", "sample_index": 0},
    id="a" * 32,
    timestamp=moment,
)
failed = Chat(
    messages=[Message("user", "down?")],
    failed=True,
    error=StoredError("ServerError", "boom"),
    id="b" * 32,
    timestamp=moment,
)
completion = Completion(
    text="The sky is", generated=" blue", usage=Usage(2, 1), id="c" * 32, timestamp=moment
)
store.save([chat, failed, completion], run="v2")
store.close()
with sqlite3.connect(path) as database:  # one self-contained file: no WAL beside it
    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.execute("PRAGMA journal_mode=DELETE")
