#!/usr/bin/env bash
# Install the test dependencies and run the whole test suite (what CI runs).
# Usage: sudo scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
.venv/bin/python -m mypy  # strict, over src/chaser/, tests/ and bench/ (pyproject.toml)
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "chaser: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
