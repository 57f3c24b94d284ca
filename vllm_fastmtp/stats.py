"""In-process counters of what the drafter did: which vocabulary map each request drafted with.

Readable from the same process (tests, in-process engines); also logged. Off the hot path: one dict update per
request and one counter update per draft call.
"""

from __future__ import annotations

import collections
import os

# request id -> language whose draft vocabulary the request uses (set once per request)
REQUEST_LANGUAGE: dict[str, str] = {}
# language -> number of draft rows (request x propose call) drafted with that map
MAP_ROWS: collections.Counter = collections.Counter()
# prompt lookup: draft rows seen, and rows whose drafts a lookup match changed
LOOKUP_ROWS: collections.Counter = collections.Counter()
# draft_confidence: requests' draft counts per propose call (length -> rows), and draft steps the head skipped
DRAFT_LENGTHS: collections.Counter = collections.Counter()
CONFIDENCE: collections.Counter = collections.Counter()
# the drafter's resolved settings (set once at load): e.g. {"pick_dtype": "bfloat16"}
DRAFTER: dict[str, str] = {}
# When VLLM_FASTMTP_RECORD_DRAFTS=1: (request id, [draft token ids]) per propose call, for parity tests.
DRAFTS: list[tuple[str, list[int]]] = []
_RECORD = os.environ.get("VLLM_FASTMTP_RECORD_DRAFTS", "0") == "1"
_MAX_REQUESTS = 100_000


def record_drafts(req_ids, drafts, langs) -> None:
    if langs is not None:
        MAP_ROWS.update(langs)
    if len(REQUEST_LANGUAGE) > _MAX_REQUESTS:  # bound memory on long-running servers
        REQUEST_LANGUAGE.clear()
    if _RECORD:
        rows = drafts if isinstance(drafts, list) else drafts.tolist()
        DRAFTS.extend(zip(req_ids, rows))


def reset() -> None:
    REQUEST_LANGUAGE.clear()
    MAP_ROWS.clear()
    LOOKUP_ROWS.clear()
    DRAFT_LENGTHS.clear()
    CONFIDENCE.clear()
    DRAFTS.clear()
    DRAFTER.clear()
