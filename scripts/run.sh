#!/usr/bin/env bash
# Install (when needed) and start the Chaser server in the foreground.
# Usage: sudo scripts/run.sh [--host 127.0.0.1] [--port 8080] [--data-dir /var/lib/chaser]
set -euo pipefail
cd "$(dirname "$0")/.."
# (Re)install when Chaser, bubblewrap or the web console's bundle is missing.
[ -x .venv/bin/chaser ] && command -v bwrap >/dev/null \
  && { [ -n "${CHASER_SKIP_CONSOLE:-}" ] || [ -f console/dist/index.html ]; } || scripts/install.sh
exec .venv/bin/chaser server "$@"
