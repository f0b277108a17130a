"""Path globs over ``/``-separated names: browse paths in ``map``, write-back allow-lists.

One syntax for both so that a pattern a person tried with ``browse --path`` means the same in
``map --include`` and in ``write_back.allow``: ``*`` and ``?`` stay within one level, ``**``
crosses levels (``Line1/**`` is everything below Line1), ``[abc]``/``[!abc]`` are classes.
Matching is case-sensitive, like OPC UA BrowseNames.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["glob_match", "glob_regex"]


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """The compiled, anchored regular expression of ``pattern``; ValueError if it has none."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            first = i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1
            end = pattern.find("]", first)
            if end < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end]
                negate = body.startswith("!")
                body = body[1:] if negate else body
                escaped = "".join("\\" + ch if ch in "\\^[]" else ch for ch in body)
                out.append("[" + ("^" if negate else "") + escaped + "]")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    try:
        return re.compile("".join(out) + r"\Z", re.DOTALL)
    except re.error as e:  # e.g. a reversed range [z-a]
        raise ValueError(f"bad glob {pattern!r}: {e}") from None


def glob_match(pattern: str, path: str) -> bool:
    """Whether the whole of ``path`` matches ``pattern``."""
    return glob_regex(pattern).match(path) is not None
