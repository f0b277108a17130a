"""Where the bridge's time goes: a cProfile dump of the bridge process (bench_bridge.py
``--profile``, bench_write_back.py) as shares of its busy time, grouped by stage."""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any

# (label, file suffix, function, indented: part of the line above). Cumulative times; cProfile
# counts a recursive function's time once, at its outermost call.
PROFILE_ENTRIES = (
    (
        "decode Publish responses (publish_decoder)",
        "opcua_mqtt/adapters/opcua/publish_decoder.py",
        "publish_response",
        False,
    ),
    (
        "asyncua: struct_from_binary (its decoding)",
        "asyncua/ua/ua_binary.py",
        "struct_from_binary",
        False,
    ),
    ("bridge: notifications -> writers", "opcua_mqtt/bridge/runtime.py", "_on_values", False),
    ("type check (_type_changed)", "opcua_mqtt/bridge/model_watch.py", "_type_changed", True),
    ("WriterState.update", "opcua_mqtt/core/writer_state.py", "update", True),
    ("bridge: ticks (GroupTicks._tick)", "opcua_mqtt/bridge/group_ticks.py", "_tick", False),
    ("JSON encoding", "opcua_mqtt/core/messages/data.py", "encode_network_message", True),
    ("MQTT session: send", "opcua_mqtt/adapters/mqtt.py", "_send_ready", False),
)


def profile_table(path: Path) -> tuple[dict[Any, Any], float, float]:
    """A cProfile dump's table, and its busy and idle (waiting in epoll) seconds."""
    table: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in table.values())
    idle = sum(v[2] for (f, _l, func), v in table.items() if "poll" in func and f == "~")
    return table, max(total - idle, 1e-9), idle


def print_top(table: dict[Any, Any], busy: float, top: int, column: int = 2) -> None:
    """The ``top`` functions by own time (``column`` 2) or cumulative time (3)."""
    kind = "own" if column == 2 else "cumulative"
    print(f"# top {top} functions by {kind} time (share of the busy time)")
    rows = sorted(
        ((k, v) for k, v in table.items() if not (k[0] == "~" and "poll" in k[2])),
        key=lambda kv: -kv[1][column],
    )[:top]
    for (filename, line, func), v in rows:
        short = "/".join(Path(filename).parts[-2:])
        print(f"#   {100 * v[column] / busy:5.1f} %  {v[1]:>9} calls  {short}:{line}({func})")


def print_profile(path: Path, top: int = 15) -> None:
    table, busy, idle = profile_table(path)
    print(
        f"\n# bridge cProfile during the window: {busy:.2f} s busy, {idle:.2f} s waiting in "
        "epoll; share of the busy time (cumulative):"
    )
    for label, suffix, func, indented in PROFILE_ENTRIES:
        cum = sum(v[3] for (f, _l, fn), v in table.items() if f.endswith(suffix) and fn == func)
        pad = "    of which " if indented else ""
        print(f"#   {pad + label:<46} {100 * cum / busy:5.1f} %")
    print_top(table, busy, top)
