"""The configuration reference (docs/configuration.md) lists every POOL_OPTIONS key, with its default.

The reference is written by hand; this keeps it from silently missing a key
that options.py accepts (or keeping one it no longer does), or showing a
default the code does not have.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from djpool.core.options import _VALIDATORS, PoolOptions

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\| `([A-Z_]+)` \| ([^|]+) \|", re.MULTILINE)


def differences(reference: Path) -> list[str]:
    """What the reference's POOL_OPTIONS table gets wrong about options.py (empty: nothing)."""
    section = reference.read_text().split("\n## POOL_OPTIONS\n", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("| `"))
    documented = {key: ast.literal_eval(cell.strip().strip("`")) for key, cell in ROW.findall(table)}
    problems = [f"{key} is not documented" for key in _VALIDATORS if key not in documented]
    problems += [f"{key} is documented but not accepted" for key in documented if key not in _VALIDATORS]
    defaults = {field.name.upper(): field.default for field in dataclasses.fields(PoolOptions)}
    for key, shown in documented.items():
        actual = defaults.get(key)
        # 900 for 900.0 is fine; True for 1, or "None" for None, is not.
        same_kind = type(shown) is type(actual) or {type(shown), type(actual)} == {int, float}
        if key in defaults and not (same_kind and shown == actual):
            problems.append(f"{key}: the reference says {shown!r}, options.py has {actual!r}")
    return problems


def test_every_key_is_documented_with_its_default():
    assert differences(REFERENCE) == []


def test_a_wrong_or_missing_row_is_found(tmp_path: Path):
    text = REFERENCE.read_text()
    broken = tmp_path / "configuration.md"
    timeout_row = next(line for line in text.splitlines() if line.startswith("| `TIMEOUT` |"))
    broken.write_text(text.replace("| `TIMEOUT` | 30 |", "| `TIMEOUT` | 60 |").replace("| `RECYCLE` |", "| `RECYCLED` |"))
    assert differences(broken) == [
        "RECYCLE is not documented",
        "RECYCLED is documented but not accepted",
        "TIMEOUT: the reference says 60, options.py has 30.0",
    ]
    assert timeout_row  # the row the replacement changed exists
