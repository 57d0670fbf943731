"""Storage for chats and completions: one SQLite file by default, PostgreSQL for teams.

>>> import asyncio, tempfile, pathlib
>>> from jib.testing import EchoGenerator
>>> from jib.storage import open_store
>>> store = open_store(pathlib.Path(tempfile.mkdtemp()) / "jib.db")
>>> pipeline = EchoGenerator(model="demo").chat().watch(store.watch(run="docs"))
>>> chats = asyncio.run(pipeline.run_batch(["hello", "world"]))
>>> [chat.content for chat in store.query(run="docs")]
['hello', 'world']
>>> store.close()

`open_store()` with no URL opens the default store (see `default_store_path`); `$JIB_STORE` (a
path or a database URL) overrides it. The schema and its migration story are described in
`jib.storage._schema`. This package imports SQLAlchemy; `import jib` does not import it.
"""

from jib.chat import UnreadableRecordError, UnreadableRecordWarning
from jib.storage._errors import RecordNotFoundError, StoreError
from jib.storage._export import FLAT_COLUMNS
from jib.storage._location import (
    STORE_ENV_VAR,
    default_store_path,
    default_store_url,
    to_database_url,
)
from jib.storage._provider_batches import ProviderBatchJournal
from jib.storage._query import Filter, FilterArgs, StoredResult
from jib.storage._response_cache import ResponseCache, ResponseCacheStats, open_response_cache
from jib.storage._rows import Record, input_key
from jib.storage._schema import SCHEMA_VERSION
from jib.storage.store import ChatStore, open_store

__all__ = [
    "FLAT_COLUMNS",
    "SCHEMA_VERSION",
    "STORE_ENV_VAR",
    "ChatStore",
    "Filter",
    "FilterArgs",
    "ProviderBatchJournal",
    "Record",
    "RecordNotFoundError",
    "ResponseCache",
    "ResponseCacheStats",
    "StoreError",
    "StoredResult",
    "UnreadableRecordError",
    "UnreadableRecordWarning",
    "default_store_path",
    "default_store_url",
    "input_key",
    "open_response_cache",
    "open_store",
    "to_database_url",
]
