#!/usr/bin/env bash
# bench/run.sh: the price of durability, measured on this machine.
#
# Builds durlab from this checkout, then for 1,000, 100,000 and 1,000,000
# users runs
# `durlab profile` with no durability and durably, each in a fresh process
# and a fresh data folder, and prints the wall time of the run, the peak RSS
# of the process (GNU time -v) and the durable/plain ratio.
#
# Usage: bench/run.sh [--skip-1m] [--runs N]
#   --skip-1m   only 1,000 users (or BENCH_SKIP_1M=1); the larger sizes take
#               about a minute and 1.5 GB of disk
#   --runs N    runs of each mode at 1,000 users, median reported (default 9)
#
# Needs Go, and GNU time for the peak RSS (Debian/Ubuntu:
# apt-get update && apt-get install -y time). Set DURLAB_BENCH_DIR to put
# the databases on another disk than $TMPDIR (they are removed at the end).
set -euo pipefail

skip_1m=${BENCH_SKIP_1M:-0}
runs=9
while [ $# -gt 0 ]; do
	case $1 in
	--skip-1m) skip_1m=1 ;;
	--runs) runs=$2; shift ;;
	-h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/run.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${DURLAB_BENCH_DIR:-${TMPDIR:-/tmp}}/durlab-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "building durlab..." >&2
(cd "$root" && go build -o "$work/durlab" .)

gnutime=""
if [ -x /usr/bin/time ] && /usr/bin/time --version 2>&1 | grep -q GNU; then
	gnutime=/usr/bin/time
else
	echo "GNU time not found: peak RSS not measured (apt-get install -y time)" >&2
fi

# field NAME FILE: a number from the one-line JSON report in FILE.
field() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" "$2"; }

# run MODE BATCHES PAGES SIZE: one durlab process in a fresh data folder;
# prints "wall_ms rss_kb".
run() {
	local mode=$1 dir
	dir=$(mktemp -d "$work/run.XXXXXX")
	local args=(profile --batches "$2" --pages "$3" --page-size "$4" --seed 1 --output json
		--data-dir "$dir/data" --out "$dir/main.prof" --wall-out "")
	[ "$mode" = plain ] && args+=(--no-durability)
	if [ -n "$gnutime" ]; then
		"$gnutime" -v -o "$dir/time.txt" "$work/durlab" "${args[@]}" >"$dir/report.json" 2>"$dir/stderr.txt" ||
			{ cat "$dir/stderr.txt" >&2; exit 1; }
	else
		"$work/durlab" "${args[@]}" >"$dir/report.json" 2>"$dir/stderr.txt" || { cat "$dir/stderr.txt" >&2; exit 1; }
	fi
	local rss=-
	[ -n "$gnutime" ] && rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$dir/time.txt")
	echo "$(field wall_ms "$dir/report.json") $rss"
	rm -rf "$dir"
}

# median of the numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# bench LABEL RUNS BATCHES PAGES SIZE
bench() {
	local label=$1 n=$2 p=() d=() pr=() dr=() out pw prss dw drss
	shift 2
	for ((i = 0; i < n; i++)); do
		out=$(run plain "$@")
		read -r pw prss <<<"$out"
		out=$(run durable "$@")
		read -r dw drss <<<"$out"
		p+=("$pw"); pr+=("$prss"); d+=("$dw"); dr+=("$drss")
	done
	local pm dm prm drm
	pm=$(printf '%s\n' "${p[@]}" | median)
	dm=$(printf '%s\n' "${d[@]}" | median)
	prm=$(printf '%s\n' "${pr[@]}" | sort -n | tail -1)
	drm=$(printf '%s\n' "${dr[@]}" | sort -n | tail -1)
	awk -v l="$label" -v n="$n" -v pm="$pm" -v dm="$dm" -v pr="$prm" -v dr="$drm" 'function t(ms) {
			return ms >= 10000 ? sprintf("%.1f s", ms / 1000) : sprintf("%.1f ms", ms) }
		function m(kb) { return kb == "-" ? "n/a" : sprintf("%.0f MB", kb / 1024) }
		BEGIN { printf "| %-9s | %4d | %10s | %9s | %12s | %11s | %5.2fx |\n", l, n, t(pm), m(pr), t(dm), m(dr), dm / pm }'
}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
mem=$(awk '/MemTotal/ {printf "%.0f GB", $2 / 1048576}' /proc/meminfo 2>/dev/null)
echo "machine: ${cpu:-unknown CPU}, $(nproc 2>/dev/null || echo '?') cores, ${mem:-? GB} RAM, $(go version | cut -d' ' -f3), $(uname -sr)"
echo "wall: the run (workflow start to final counts, start-up excluded); RSS: peak of the process"
echo
echo "| users     | runs | plain wall | plain RSS | durable wall | durable RSS | ratio  |"
echo "|-----------|------|------------|-----------|--------------|-------------|--------|"
bench 1,000 "$runs" 10 10 10
if [ "$skip_1m" != 1 ]; then
	# 100,000 users shows that memory does not grow with the total.
	bench 100,000 1 100 10 100
	bench 1,000,000 1 100 100 100
fi
