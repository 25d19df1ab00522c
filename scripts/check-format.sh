#!/usr/bin/env bash
# Fails when a C++ file (every tracked one, plus new files not yet committed) is not formatted the way the
# repository's .clang-format says, with clang-format 14 (Debian 12's; other versions format differently).
# Fix: clang-format -i FILE...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
format=$(command -v clang-format-14 || command -v clang-format || true)
[ -n "$format" ] || { echo "check-format: clang-format not found (apt-get install clang-format)" >&2; exit 1; }
version=$("$format" --version)
case "$version" in
  *"version 14."*) ;;
  *) echo "check-format: need clang-format 14, found: $version (formatting differs between versions)" >&2; exit 1 ;;
esac
files=()
if git rev-parse --git-dir >/dev/null 2>&1; then
  while IFS= read -r -d '' f; do [ -f "$f" ] && files+=("$f"); done \
    < <(git ls-files -z --cached --others --exclude-standard -- '*.cc' '*.h')
else  # a source tarball: everything but build output
  while IFS= read -r -d '' f; do files+=("$f"); done \
    < <(find . -path ./build -prune -o \( -name '*.cc' -o -name '*.h' \) -print0)
fi
if "$format" --dry-run --Werror "${files[@]}"; then
  echo "check-format: ${#files[@]} files formatted as .clang-format says"
else
  echo "check-format: FAILED: the files above are not formatted; run: $format -i FILE..." >&2
  exit 1
fi
