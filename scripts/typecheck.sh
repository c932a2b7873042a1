#!/usr/bin/env bash
# mypy cannot follow setuptools' editable import hook, so the checked tree is a small
# folder of symlinks that gives the sources their installed names (gradwire.codecs -> codecs/).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
mypy_bin=${MYPY:-mypy}
case "$mypy_bin" in /* | mypy) ;; *) mypy_bin="$repo/$mypy_bin" ;; esac
mkdir -p build
root=$(mktemp -d "$repo/build/typecheck.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/gradwire"
for f in gradwire/*; do ln -s "$repo/$f" "$root/gradwire/$(basename "$f")"; done
for d in codecs simulator models scenarios; do ln -s "$repo/$d" "$root/gradwire/$d"; done
cd "$root"
"$mypy_bin" --config-file "$repo/pyproject.toml" --cache-dir "$repo/.mypy_cache" -p gradwire
