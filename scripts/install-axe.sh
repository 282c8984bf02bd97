#!/usr/bin/env bash
# axe-core (from the npm registry) for the widget's accessibility test (tests/webapp/widget/): the
# test injects its axe.min.js into Chromium. It goes in a cache folder outside the repository,
# where the test looks for it: $PRETHRIFT_AXE_DIR, else ~/.cache/prethrift/axe.
#
#   scripts/install-axe.sh                  install it, or fail saying how (CI: .ci/run)
#   scripts/install-axe.sh --if-possible    install it where npm is present; otherwise say so and
#                                           go on (make test: the accessibility test then fails
#                                           with the same install command)
set -euo pipefail

VERSION=4.14.1
DIR="${PRETHRIFT_AXE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/prethrift/axe}"
SCRIPT="$DIR/node_modules/axe-core/axe.min.js"

if [ -f "$SCRIPT" ] && grep -q "axe v$VERSION" "$SCRIPT"; then
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "npm is not installed, so axe-core cannot be installed for the accessibility test." >&2
    echo "Install npm (sudo apt-get install -y npm), then run scripts/install-axe.sh" >&2
    if [ "${1:-}" = "--if-possible" ]; then
        exit 0
    fi
    exit 1
fi

echo "Installing axe-core $VERSION into $DIR (npm)..." >&2
mkdir -p "$DIR"
npm install --prefix "$DIR" --no-save --no-audit --no-fund --loglevel=error "axe-core@$VERSION"
test -f "$SCRIPT"
