"""djpool's benchmark; see bench/README.md or ``python bench/run.py --help``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from djbench.suite import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
