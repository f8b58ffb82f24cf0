#!/usr/bin/env bash
# Install Chaser on a Debian/Ubuntu machine: system packages, then a virtualenv in .venv.
# Usage: scripts/install.sh [--dev] [--systemd]   (as root)
#   --dev      adds the test dependencies
#   CHASER_SKIP_CONSOLE=1 in the environment skips building the web console (npm)
#   --systemd  installs deploy/chaser.service (to $SYSTEMD_UNIT_DIR, default
#              /etc/systemd/system) and enables it when systemd is running
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "chaser: run this as root (sandboxes need root to set up uids and cgroups)" >&2
  exit 1
fi

need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v setpriv >/dev/null || need+=(util-linux)
[ -x /usr/bin/python3 ] || need+=(python3)  # the default image's python3 (and the fallback agent)
command -v curl >/dev/null || need+=(curl)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)  # workspace disks
command -v losetup >/dev/null || need+=(mount)
command -v ps >/dev/null || need+=(procps)
command -v skopeo >/dev/null || need+=(skopeo)  # `images import`: docker save / OCI archives
# The static in-sandbox agent is compiled at server start: a compiler and a static libc.
if ! command -v gcc >/dev/null; then
  need+=(gcc libc6-dev)
elif libc_a=$(gcc -print-file-name=libc.a) && [ ! -f "$libc_a" ]; then
  need+=(libc6-dev)
fi
# The web console (console/) is bundled from npm packages at install time.
if [ -z "${CHASER_SKIP_CONSOLE:-}" ]; then
  command -v node >/dev/null || need+=(nodejs)
  command -v npm >/dev/null || need+=(npm)
fi
case " $* " in
  *" --dev "*)  # the image tests: a real registry on loopback, and a libc-free busybox
    command -v docker-registry >/dev/null || need+=(docker-registry)
    [ -x /usr/bin/busybox ] && ! ldd /usr/bin/busybox >/dev/null 2>&1 || need+=(busybox-static)
    command -v less >/dev/null || need+=(less)  # the terminal tests' full-screen program
    command -v tmux >/dev/null || need+=(tmux)  # `chaser shell` under a real terminal
    # The console's browser tests drive the distribution's Chromium (never a downloaded one).
    command -v chromium >/dev/null || need+=(chromium)
    command -v chromedriver >/dev/null || need+=(chromium-driver)
    ;;
esac
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "chaser: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "chaser: needs Python 3.11 or newer (found $("$PY" --version 2>&1))" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extra="[server]"  # `pip install chaser` alone is the SDK and the CLI
systemd=""
for arg in "$@"; do
  case "$arg" in
    --dev) extra="[server,dev]" ;;
    --systemd) systemd=1 ;;
    *) echo "chaser: unknown option $arg (see the usage at the top of $0)" >&2; exit 2 ;;
  esac
done
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
log=$(mktemp)
if ! .venv/bin/python -m pip install -q -e ".${extra}" >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "chaser: pip install failed" >&2
  exit 1
fi
rm -f "$log"
.venv/bin/python -c 'import chaser.server.app' # fails loudly if the install is broken
echo "chaser: installed in $(pwd)/.venv"
# `chaser` on PATH (a link into the virtualenv; CHASER_BIN_DIR= skips it).
bin_dir=${CHASER_BIN_DIR-/usr/local/bin}
if [ -n "$bin_dir" ] && [ -d "$bin_dir" ]; then
  ln -sfn "$(pwd)/.venv/bin/chaser" "$bin_dir/chaser"
  echo "chaser: $bin_dir/chaser -> $(pwd)/.venv/bin/chaser"
fi

# The console's bundle goes to console/dist (gitignored), which the server serves at
# /console; `npm ci` installs exactly what console/package-lock.json pins.
if [ -z "${CHASER_SKIP_CONSOLE:-}" ]; then
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [ "$node_major" -lt 18 ]; then  # esbuild's floor (Debian 12 and Ubuntu 24.04 ship 18)
    echo "chaser: the web console's build needs Node.js 18 or newer (found $(node --version 2>&1));" \
      "install a newer nodejs, or set CHASER_SKIP_CONSOLE=1 for the API alone" >&2
    exit 1
  fi
  log=$(mktemp)
  if ! (cd console && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "chaser: building the web console failed (CHASER_SKIP_CONSOLE=1 skips it; the API works without it)" >&2
    exit 1
  fi
  grep '^chaser console:' "$log" || true
  rm -f "$log"
fi

if [ -n "$systemd" ]; then
  unit_dir=${SYSTEMD_UNIT_DIR:-/etc/systemd/system}
  mkdir -p "$unit_dir"
  sed "s#@PREFIX@#$(pwd)#g" deploy/chaser.service > "$unit_dir/chaser.service"
  echo "chaser: installed $unit_dir/chaser.service"
  if [ -d /run/systemd/system ] && [ -z "${SYSTEMD_UNIT_DIR:-}" ]; then
    systemctl daemon-reload
    systemctl enable --now chaser
    echo "chaser: service enabled and started (systemctl status chaser)"
  else
    echo "chaser: systemd is not running here; start it with: systemctl enable --now chaser"
  fi
fi
