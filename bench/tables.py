"""Write docs/performance.md's tables from a benchmark run's results.

    python bench/run.py --json bench/results/latest.json   # the run (hatch run bench:all --json ...)
    python bench/tables.py                                 # its tables into docs/performance.md
    python bench/tables.py --check                         # exit 1 if the page is not what the results give

Each table sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``
(see djbench.doctables for the names); the prose around them is left as it
is. ``--check`` lets CI prove that every figure on the page came from the
committed results file, not from a hand edit.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from djbench.doctables import MarkerError, splice  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "latest.json"
PAGE = ROOT / "docs" / "performance.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/tables.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"the results of bench/run.py --json (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--doc", type=Path, default=PAGE, help=f"the page to fill in (default {PAGE.relative_to(ROOT)})")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the page differs from what the results give")
    args = parser.parse_args(argv)
    results = json.loads(args.json.read_text(encoding="utf-8"))
    page = args.doc.read_text(encoding="utf-8")
    try:
        filled = splice(page, results)
    except MarkerError as error:
        print(f"{args.doc}: {error}", file=sys.stderr)
        return 2
    if args.check:
        if filled == page:
            print(f"{args.doc}: its tables are those of {args.json}")
            return 0
        diff = difflib.unified_diff(page.splitlines(), filled.splitlines(), str(args.doc), f"{args.doc} from {args.json}", lineterm="", n=1)
        print("\n".join(list(diff)[:60]), file=sys.stderr)
        print(f"\n{args.doc}: tables differ from {args.json}; run python bench/tables.py (hatch run bench:tables)", file=sys.stderr)
        return 1
    if filled != page:
        args.doc.write_text(filled, encoding="utf-8")
        print(f"{args.doc}: tables written from {args.json}")
    else:
        print(f"{args.doc}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
