"""bench/tables.py: docs/performance.md's tables from a run's results JSON.

Run with ``hatch run bench:test`` (standard library and pytest only; no
Django, no database). The committed page must be what the committed results
give, and the splicing must leave the prose alone and refuse markers it
cannot fill.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "bench" / "tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)

from djbench import doctables  # noqa: E402

RESULTS = json.loads((ROOT / "bench" / "results" / "latest.json").read_text(encoding="utf-8"))


def page(*names: str, prose: str = "Prose stays.") -> str:
    """A page with a marker pair for each of ``names``, between prose."""
    parts = [f"# Page\n\n{prose}\n"]
    for name in names:
        parts.append(f"<!-- bench:{name} -->\nstale\n<!-- /bench:{name} -->\n\n{prose} ({name})\n")
    return "\n".join(parts)


def test_the_committed_page_is_what_the_committed_results_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert tables.main(["--check"]) == 0, capsys.readouterr().err


def test_check_fails_on_a_hand_edited_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(doctables.splice(page(*doctables.SECTIONS), RESULTS), encoding="utf-8")
    assert tables.main(["--check", "--doc", str(doc)]) == 0
    table_line = next(line for line in doc.read_text(encoding="utf-8").splitlines() if line.startswith("| ") and "---" not in line)
    doc.write_text(doc.read_text(encoding="utf-8").replace(table_line, table_line + " edited |", 1), encoding="utf-8")
    assert tables.main(["--check", "--doc", str(doc)]) == 1
    assert "edited" in capsys.readouterr().err


def test_writing_fills_every_section_and_keeps_the_prose(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(page(*doctables.SECTIONS), encoding="utf-8")
    assert tables.main(["--doc", str(doc)]) == 0
    written = doc.read_text(encoding="utf-8")
    assert "stale" not in written
    for name in doctables.SECTIONS:
        assert f"Prose stays. ({name})" in written
        assert f"<!-- bench:{name} -->\n\n" in written and f"\n\n<!-- /bench:{name} -->" in written
    assert doctables.splice(written, RESULTS) == written  # a second pass changes nothing


def test_a_marker_without_a_table_or_a_table_without_a_marker_is_refused() -> None:
    with pytest.raises(doctables.MarkerError, match="names no table"):
        doctables.splice(page(*doctables.SECTIONS, "nonsense"), RESULTS)
    with pytest.raises(doctables.MarkerError, match="no markers for: calls"):
        doctables.splice(page(*(n for n in doctables.SECTIONS if n != "calls")), RESULTS)
    unclosed = page(*doctables.SECTIONS).replace("<!-- /bench:memory -->", "")
    with pytest.raises(doctables.MarkerError):
        doctables.splice(unclosed, RESULTS)


def test_a_run_of_some_phases_only_still_fills_every_section() -> None:
    partial = {key: RESULTS[key] for key in ("meta", "plan", "calls", "checks") if key in RESULTS}
    filled = doctables.splice(page(*doctables.SECTIONS), partial)
    assert "not in this run's results" in filled
    assert "calls/request" in filled


def test_the_results_carry_what_the_header_names() -> None:
    meta = RESULTS["meta"]
    for field in ("date", "command", "python", "versions", "servers", "seconds"):
        assert meta.get(field), field
    for dist in ("django", "sqlalchemy", "psycopg", "mysqlclient"):
        assert dist in meta["versions"]
    text = doctables.header(RESULTS)
    assert f"Python {meta['python']}" in text and f"Django {meta['versions']['django']}" in text
    for version in meta["servers"].values():
        assert version in text


def test_counts_are_whole_when_exact() -> None:
    assert doctables.whole_or_two(320.0) == "320"
    assert doctables.whole_or_two(320.5) == "320.50"
    assert doctables.signed(12.0) == "+12"
    assert doctables.signed(-3.0) == "-3"
    assert doctables.whole_or_two(None) == "–"
