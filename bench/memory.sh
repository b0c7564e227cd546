#!/usr/bin/env bash
# bench/memory.sh: peak RSS (GNU time -v) of dedup with no faults, over
# batches of one page of one user, for a growing number of batches: memory
# is bounded by the page, not by the run, so the peak should stay flat.
#
# Builds durlab from this checkout; each run gets a fresh data folder.
#
# Usage: bench/memory.sh [BATCHES...]   (default: 1000 20000)
set -euo pipefail

counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 20000)
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$root" && go build -o "$work/durlab" .)

echo "| batches | wall | peak RSS | vs the first |"
echo "|---|---|---|---|"
first=""
for n in "${counts[@]}"; do
	dir=$(mktemp -d -p "$work")
	(cd "$dir" && /usr/bin/time -v -o "$dir/time.txt" "$work/durlab" dedup --batches "$n" --pages 1 --page-size 1 \
		--fail-prob 0 --gen-fail-prob 0 --crash-prob 0 -q -o json >"$dir/out.json")
	rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
	wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")
	[ -n "$first" ] || first=$rss
	awk -v n="$n" -v wall="$wall" -v rss="$rss" -v first="$first" 'BEGIN { printf "| %s | %s | %.1f MB | %.2fx |\n", n, wall, rss / 1024, rss / first }'
	rm -rf "$dir"
done
