#!/usr/bin/env bash
# Docs that match the code: every C++ code block in docs/*.md whose first line
# is a comment naming a file of the repository ("// examples/x/y.cc") must
# appear, line for line and in order, in that file.
set -euo pipefail
source_dir=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$source_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
checked=0
for doc in docs/*.md; do
  # Split the doc's tagged blocks into files: block N's source path on its
  # first line, then its lines.
  awk -v out="$work/block" '
    /^```cpp$/ { inside = 1; first = 1; next }
    /^```$/ && inside { inside = 0; if (file != "") close(file); file = ""; next }
    inside && first {
      first = 0
      if ($0 ~ /^\/\/ [A-Za-z0-9_.\/-]+\.(cc|h)$/) { n++; file = out n; print substr($0, 4) > file }
      next
    }
    inside && file != "" { print > file }
  ' "$doc"
  for block in "$work"/block*; do
    [ -e "$block" ] || continue
    path=$(head -1 "$block")
    checked=$((checked + 1))
    if [ ! -f "$path" ]; then
      echo "$doc: a code block names $path, which does not exist"; status=1
    elif ! awk 'NR == FNR { if (FNR > 1) want[++n] = $0; next }
                { if (i < n && $0 == want[i + 1]) i++ }
                END { exit i == n ? 0 : 1 }' "$block" "$path"; then
      echo "$doc: a code block from $path no longer matches it; the block:"
      tail -n +2 "$block"; status=1
    fi
    rm -f "$block"
  done
done
[ "$checked" -gt 0 ] || { echo "no tagged code blocks found"; exit 1; }
[ "$status" -eq 0 ] && echo "$checked code blocks match their files"
exit "$status"
