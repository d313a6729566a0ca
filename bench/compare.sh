#!/usr/bin/env bash
# Same-run comparison of `bench/submit.py` between a git commit and the working tree.
#
#   bash bench/compare.sh REF [ROUNDS]
#
# Checks REF out into a temporary worktree, copies this tree's bench/submit.py into it (so both
# print the same figures, CPU per order included), then alternates REF and this tree ROUNDS
# times (default 2) and prints one JSON line per run, prefixed with which tree it was. This
# machine's speed moves within the hour: compare runs of one invocation, not across days.
set -euo pipefail
ref=${1:?usage: bash bench/compare.sh REF [ROUNDS]}
rounds=${2:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
base=$(mktemp -d /tmp/mbt-compare-XXXXXX)
trap 'git -C "$here" worktree remove --force "$base" >/dev/null 2>&1 || true' EXIT
git -C "$here" worktree add --detach -q "$base" "$ref"
cp "$here/bench/submit.py" "$base/bench/submit.py"
for _ in $(seq "$rounds"); do
  for tree in "$base" "$here"; do
    name=$([ "$tree" = "$here" ] && echo "working tree" || echo "$ref")
    # each tree runs its own code: `mbt up` and the services import from the tree's directory
    (cd "$tree" && PYTHONPATH="$tree" python bench/submit.py 2>/dev/null | tail -1 |
      sed "s|^|$name |")
  done
done
