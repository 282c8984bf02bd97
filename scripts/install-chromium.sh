#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/webapp/test_search_page.py, tests/console/): Playwright
# drives it at /usr/bin/chromium because `playwright install` cannot download a browser here.
#
#   scripts/install-chromium.sh                  install it, or fail saying how (CI: .ci/run)
#   scripts/install-chromium.sh --if-possible    install it where root (or sudo without a password)
#                                                and apt-get allow; otherwise say so and go on
#                                                (make test: the browser tests then fail with the
#                                                same install command)
set -euo pipefail

CHROMIUM=/usr/bin/chromium
INSTALL="sudo apt-get update && sudo apt-get install -y chromium"

if [ -x "$CHROMIUM" ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    SUDO=(unable)
fi

if [ "${SUDO[*]}" = unable ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "Chromium is not installed at $CHROMIUM and this script cannot install it (it needs apt-get" >&2
    echo "and root or password-less sudo). Install it with:  $INSTALL" >&2
    if [ "${1:-}" = "--if-possible" ]; then
        exit 0
    fi
    exit 1
fi

echo "Installing Debian's chromium for the browser tests (apt-get)..." >&2
"${SUDO[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q chromium
test -x "$CHROMIUM"
