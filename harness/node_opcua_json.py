"""node-opcua's JSON decoder as a test oracle: ``interop/decode.mjs`` (node-opcua-json, pinned in
interop/package-lock.json) run once over many values; its protocol is in that file's header."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from harness.processes import REPO_ROOT

INTEROP = REPO_ROOT / "interop"
DECODER = INTEROP / "decode.mjs"
NODE_OPCUA_JSON = INTEROP / "node_modules" / "node-opcua-json"
NOT_READY = (
    "the node-opcua interop test needs Node.js (`node` on PATH) and interop/node_modules "
    "(node-opcua-json, pinned in interop/package-lock.json): run `bash scripts/test`, which "
    "installs both, or `cd interop && npm ci`."
)


def decode_with_node_opcua(requests: Sequence[Mapping[str, Any]]) -> dict[Any, dict[str, Any]]:
    """node-opcua's reading of each request (``{"id", "kind", "json", "namespaces"}``), by id,
    in one Node.js process; fails the test (never skips) when Node.js or node-opcua is missing."""
    node = shutil.which("node")
    if node is None or not NODE_OPCUA_JSON.is_dir():
        missing = "node is not on PATH" if node is None else f"{NODE_OPCUA_JSON} is missing"
        pytest.fail(f"{missing}; {NOT_READY}", pytrace=False)
    lines = [json.dumps(r, ensure_ascii=False, allow_nan=False) for r in requests]
    proc = subprocess.run(
        [node, str(DECODER)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        cwd=INTEROP,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{DECODER.name} exited with {proc.returncode}; {NOT_READY}\nstderr:\n{proc.stderr}",
            pytrace=False,
        )
    replies = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(replies) == len(lines), f"{len(lines)} requests, {len(replies)} replies"
    return {r["id"]: r for r in replies}
