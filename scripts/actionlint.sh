#!/usr/bin/env bash
# Lint the GitHub Actions workflows with actionlint: `scripts/actionlint.sh` checks .github/workflows/,
# `scripts/actionlint.sh FILE...` checks those files. tests/app/test_packaging.py runs it.
#
# actionlint is built from source with Go the first time (`go install`, about 20 s on two cores) into a cache that
# every clone of the course shares, ~/.cache/messenger-workbook/bin, and reused after that. The file name
# carries the version, so changing VERSION here builds the new one.
set -euo pipefail

VERSION=v1.7.12
BIN_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/messenger-workbook/bin"
ACTIONLINT="$BIN_DIR/actionlint-$VERSION"

if [ ! -x "$ACTIONLINT" ]; then
    # Go where the workbook looks for it too (workbook/services/native.py builds FerretDB with it).
    GO="$(command -v go || echo /usr/local/go/bin/go)"
    if [ ! -x "$GO" ]; then
        echo "actionlint.sh: building actionlint needs Go 1.25 or newer (https://go.dev/doc/install); none found" >&2
        exit 2
    fi
    echo "actionlint.sh: building actionlint $VERSION into $BIN_DIR (only this once)" >&2
    mkdir -p "$BIN_DIR"
    # Built in a directory of its own beside the target, then renamed: two runs at once never see half a file.
    build="$(mktemp -d "$BIN_DIR/.build.XXXXXX")"
    trap 'rm -rf "$build"' EXIT
    GOBIN="$build" "$GO" install "github.com/rhysd/actionlint/cmd/actionlint@$VERSION"
    mv -f "$build/actionlint" "$ACTIONLINT"
    rm -rf "$build"  # the trap does not run after exec below
    trap - EXIT
fi

if [ "$#" -eq 0 ]; then
    cd "$(dirname "$0")/.."
    shopt -s nullglob
    set -- .github/workflows/*.yml .github/workflows/*.yaml
fi
exec "$ACTIONLINT" "$@"
