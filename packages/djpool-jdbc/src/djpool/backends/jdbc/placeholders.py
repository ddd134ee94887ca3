"""Django's ``%s`` / ``%(name)s`` placeholders to JDBC's ``?``.

Django writes SQL for drivers with the ``format`` and ``pyformat`` styles:
``%s`` for a positional parameter, ``%(name)s`` for a named one and ``%%``
for a literal percent sign. JDBC knows only ``?``. A plain
``replace("%s", "?")`` (what the predecessor did) turns ``%%s`` into ``%?``
and rewrites ``'%s'`` inside string literals, so this is a small scanner that
knows where quoted text and comments start and end.

Inside quoted text and comments nothing is a placeholder: ``%s`` stays
``%s``. ``%%`` still becomes ``%`` everywhere, because that is what the
``format`` drivers do (they run ``sql % params`` over the whole statement),
so ``LIKE 'a%%'`` means the same on every Django backend.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["translate", "PlaceholderError"]


class PlaceholderError(ValueError):
    """The statement's placeholders and the parameters given do not match."""


@functools.lru_cache(maxsize=512)
def _scan(sql: str, mysql_syntax: bool) -> tuple[str, tuple[str | None, ...]]:
    """Return the ``?`` statement and, per placeholder, its name (None for ``%s``)."""
    out: list[str] = []
    names: list[str | None] = []
    i, n = 0, len(sql)
    quote: str | None = None  # the quote character we are inside, or "--" / "/*"
    while i < n:
        char = sql[i]
        if quote is None:
            if char == "%":
                nxt = sql[i + 1] if i + 1 < n else ""
                if nxt == "%":
                    out.append("%")
                    i += 2
                    continue
                if nxt == "s":
                    out.append("?")
                    names.append(None)
                    i += 2
                    continue
                if nxt == "(":
                    end = sql.find(")", i + 2)
                    if end != -1 and sql[end + 1 : end + 2] == "s":
                        out.append("?")
                        names.append(sql[i + 2 : end])
                        i = end + 2
                        continue
                raise PlaceholderError(
                    f"unsupported format character at index {i} of the statement: "
                    f"{sql[i : i + 8]!r}; use %s, %(name)s, or %% for a percent sign"
                )
            if char in ("'", '"', "`"):
                quote = char
            elif sql.startswith("--", i) or (char == "#" and mysql_syntax):
                quote = "--"
            elif sql.startswith("/*", i):
                quote = "/*"
                out.append("/*")
                i += 2
                continue
            out.append(char)
            i += 1
            continue
        # Inside quoted text or a comment.
        if char == "%" and sql.startswith("%%", i):
            out.append("%")
            i += 2
            continue
        if quote == "--":
            if char == "\n":
                quote = None
        elif quote == "/*":
            if sql.startswith("*/", i):
                out.append("*/")
                i += 2
                quote = None
                continue
        elif char == "\\" and mysql_syntax and quote != "`" and i + 1 < n:
            out.append(sql[i : i + 2])
            i += 2
            continue
        elif char == quote:
            # A doubled quote ('it''s') closes and reopens: same result.
            quote = None
        out.append(char)
        i += 1
    return "".join(out), tuple(names)


def translate(
    sql: str, params: Sequence[Any] | Mapping[str, Any] | None, *, mysql_syntax: bool = False
) -> tuple[str, list[Any]]:
    """Return ``(statement with ?, positional parameters)`` for a JDBC driver.

    ``params=None`` means "no parameter substitution", as with Django's other
    drivers: the statement is sent as written, ``%`` signs and all.
    ``mysql_syntax``: a backslash escapes the next character inside quoted
    text and ``#`` starts a comment (MySQL and OceanBase's MySQL mode; not
    standard SQL, Oracle or PostgreSQL, where ``'C:\'`` is a whole string).
    """
    if params is None:
        return sql, []
    statement, names = _scan(sql, mysql_syntax)
    if isinstance(params, Mapping):
        if None in names:
            raise PlaceholderError("parameters are a mapping, but the statement has a positional %s placeholder")
        try:
            return statement, [params[name] for name in names]  # type: ignore[index]
        except KeyError as error:
            raise PlaceholderError(f"no value for the placeholder %({error.args[0]})s in the parameters") from None
    if isinstance(params, (str, bytes)):
        raise PlaceholderError(f"parameters must be a sequence or a mapping, not {type(params).__name__}")
    if not isinstance(params, Sequence):
        params = list(params)
    if any(name is not None for name in names):
        raise PlaceholderError("the statement has %(name)s placeholders; pass the parameters as a mapping")
    if len(names) != len(params):
        raise PlaceholderError(
            f"the statement has {len(names)} placeholder(s) but {len(params)} parameter(s) were given"
        )
    return statement, list(params)
