#!/usr/bin/env bash
# mypy cannot follow setuptools' editable import hook, so the checked tree is a small
# folder of symlinks that gives the sources their installed names (gradwire.codecs -> codecs/).
set -euo pipefail
cd "$(dirname "$0")/.."
root=build/typecheck
rm -rf "$root"; mkdir -p "$root/gradwire"
for f in gradwire/*; do ln -s "$PWD/$f" "$root/gradwire/$(basename "$f")"; done
for d in codecs simulator models scenarios; do ln -s "$PWD/$d" "$root/gradwire/$d"; done
cd "$root" && "${MYPY:-mypy}" --config-file ../../pyproject.toml -p gradwire
