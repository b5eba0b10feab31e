#!/usr/bin/env bash
# Render every schema/*.dbml to schema/*.svg with the pinned, locally installed dbml-renderer (no network).
# Idempotent: an SVG is rewritten only when its picture changed. Install the renderer once with: npm ci
set -euo pipefail
cd "$(dirname "$0")"

renderer=node_modules/.bin/dbml-renderer
if [[ ! -x $renderer ]]; then
    echo "render.sh: $renderer is missing. Fix: cd schema && npm ci" >&2
    exit 1
fi

for source in *.dbml; do
    target=${source%.dbml}.svg
    fresh=$(mktemp "${target}.XXXXXX")
    trap 'rm -f "$fresh"' EXIT
    "$renderer" --input "$source" --output "$fresh"
    if [[ -f $target ]] && cmp -s "$fresh" "$target"; then
        rm -f "$fresh"
        echo "up to date: $target"
    else
        chmod 644 "$fresh"
        mv "$fresh" "$target"
        echo "rendered:   $target"
    fi
    trap - EXIT
done
