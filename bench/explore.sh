#!/usr/bin/env bash
# bench/explore.sh: trials per second of `durlab explore exactly-once
# --crash-points` at the default size (10 batches x 10 pages x 10 users),
# on SQLite and on Postgres, with the peak RSS of explore (GNU time -v).
#
# Builds durlab from this checkout. The Postgres run gets fresh base
# databases, dropped afterwards; explore creates and drops each trial's.
#
# Usage: bench/explore.sh [--sqlite-only] [--parallel P]
#
# Needs Go, GNU time, python3 and, for Postgres, psql and a server:
# DURLAB_TEST_POSTGRES, by default
# postgres://postgres@127.0.0.1:5432/test?sslmode=disable (trust auth), as for
# the tests. Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start
set -euo pipefail

sqlite_only=0
parallel=$(nproc)
while [ $# -gt 0 ]; do
	case $1 in
	--sqlite-only) sqlite_only=1 ;;
	--parallel) parallel=$2; shift ;;
	-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/explore.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$root" && go build -o "$work/durlab" .)

# measure NAME ARGS...: one exploration, its JSON summary and GNU time's
# report, then a table row.
measure() {
	local name=$1
	shift
	(cd "$work" && /usr/bin/time -v -o "$work/time.txt" "$work/durlab" explore exactly-once --crash-points \
		--parallel "$parallel" -o json "$@" >"$work/out.json" 2>"$work/err.txt") ||
		{ echo "bench/explore.sh: $name exploration failed:" >&2; cat "$work/err.txt" >&2; exit 1; }
	local rss
	rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$work/time.txt")
	python3 - "$name" "$rss" "$work/out.json" <<'PY'
import json, sys
name, rss, path = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.load(open(path))
s = r["wall_ms"] / 1000
print(f"| {name} | {r['points']} | {r['held']} | {s:.1f} s | {r['points'] / s:.1f} | {rss} MB |")
PY
}

echo "| databases | crash points | held | wall | trials/s | peak RSS of explore |"
echo "|---|---|---|---|---|---|"
measure SQLite
[ "$sqlite_only" = 1 ] && exit 0

admin=${DURLAB_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
if ! psql "$admin" -qAtc 'SELECT 1' >/dev/null 2>&1; then
	echo "bench/explore.sh: no Postgres server at $admin (--sqlite-only skips it)" >&2
	exit 1
fi
tag=bench_explore_$$
psql "$admin" -qc "CREATE DATABASE ${tag}_sys" -c "CREATE DATABASE ${tag}_store"
trap 'psql "$admin" -qc "DROP DATABASE IF EXISTS ${tag}_sys" -c "DROP DATABASE IF EXISTS ${tag}_store" >/dev/null; rm -rf "$work"' EXIT
url() { python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p._replace(path="/" + sys.argv[2]).geturl())' "$admin" "$1"; }
measure "Postgres (local)" --system-db "$(url "${tag}_sys")" --store "$(url "${tag}_store")"
