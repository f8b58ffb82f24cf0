"""`python -m chaser ...` runs the `chaser` command line."""

from __future__ import annotations

from chaser.cli.main import main

if __name__ == "__main__":
    main()
