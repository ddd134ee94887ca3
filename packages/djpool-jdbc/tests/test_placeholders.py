"""Django's %s / %(name)s / %% to JDBC's ?: the translation table (no JVM needed)."""

from __future__ import annotations

import pytest

from djpool.backends.jdbc.placeholders import PlaceholderError, translate

CASES = [
    # (sql, params, mysql_syntax, expected sql, expected params)
    ("SELECT %s", [1], False, "SELECT ?", [1]),
    ("SELECT %s, %s", (1, 2), False, "SELECT ?, ?", [1, 2]),
    ("SELECT %(a)s, %(b)s, %(a)s", {"a": 1, "b": 2}, False, "SELECT ?, ?, ?", [1, 2, 1]),
    ("SELECT %(a)s", {"a": 1, "unused": 2}, False, "SELECT ?", [1]),
    ("SELECT '100%%', %s", [1], False, "SELECT '100%', ?", [1]),
    ("SELECT 100 %% 7, %s", [1], False, "SELECT 100 % 7, ?", [1]),
    ("SELECT '%%s', %s", [1], False, "SELECT '%s', ?", [1]),
    ("SELECT '%s'", [], False, "SELECT '%s'", []),
    ('SELECT "col%s" FROM t WHERE a = %s', [1], False, 'SELECT "col%s" FROM t WHERE a = ?', [1]),
    ("SELECT 'it''s %s', %s", [1], False, "SELECT 'it''s %s', ?", [1]),
    ("SELECT %s -- not %s\n, %s", [1, 2], False, "SELECT ? -- not %s\n, ?", [1, 2]),
    ("SELECT %s /* not %s */ , %s", [1, 2], False, "SELECT ? /* not %s */ , ?", [1, 2]),
    ("SELECT `a%s`, %s", [1], True, "SELECT `a%s`, ?", [1]),
    # MySQL: a backslash escapes the quote, so the literal goes on.
    ("SELECT 'a\\' %s', %s", [1], True, "SELECT 'a\\' %s', ?", [1]),
    ("SELECT %s # not %s\n", [1], True, "SELECT ? # not %s\n", [1]),
    # Standard SQL and PostgreSQL: 'C:\' is a complete literal.
    ("SELECT 'C:\\', %s", [1], False, "SELECT 'C:\\', ?", [1]),
    ("SELECT %s", None, False, "SELECT %s", []),
    ("SELECT '100%%'", None, False, "SELECT '100%%'", []),
]


@pytest.mark.parametrize(("sql", "params", "mysql", "expected_sql", "expected_params"), CASES)
def test_translation(sql, params, mysql, expected_sql, expected_params):
    assert translate(sql, params, mysql_syntax=mysql) == (expected_sql, expected_params)


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("SELECT %s, %s", [1], "2 placeholder(s) but 1 parameter(s)"),
        ("SELECT %s", {"a": 1}, "positional %s placeholder"),
        ("SELECT %(a)s", [1], "pass the parameters as a mapping"),
        ("SELECT %(a)s", {"b": 1}, "no value for the placeholder %(a)s"),
        ("SELECT %d", [1], "unsupported format character"),
        ("SELECT %s", "x", "sequence or a mapping"),
    ],
)
def test_mismatches_are_reported(sql, params, message):
    with pytest.raises(PlaceholderError) as info:
        translate(sql, params)
    assert message in str(info.value)
