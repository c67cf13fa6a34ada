"""`python -m monolith.reference [ROOT]`: write every generated reference page under ROOT/docs (`make reference`)."""

from __future__ import annotations

import sys
from pathlib import Path

from monolith.reference import pages


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for name, render in pages(root).items():
        path = root / "docs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render())
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
