#!/usr/bin/env bash
# bench/workers.sh: batch workflows on Postgres, run by one `durlab worker`
# and by two.
#
# Builds durlab from this checkout. For the 1,000-user profile workload
# (10 batches x 10 pages x 10 users) and one ten times larger (100 batches),
# with 1 worker and with 2 (and, to tell processes from concurrency, 1 worker
# with twice the concurrency), it creates scratch system and store databases,
# starts the workers, times `durlab profile --queue` end to end (start-up
# included, median of the runs), stops the workers and drops the databases.
# It prints the wall times and the 1-worker/2-worker ratio.
#
# Usage: bench/workers.sh [--runs N] [--concurrency C]
#   --runs N         runs of each configuration, median reported (default 3)
#   --concurrency C  per-worker concurrency (default 4, a new queue's)
#
# Needs Go, psql and a Postgres server: DURLAB_TEST_POSTGRES, by default
# postgres://postgres@127.0.0.1:5432/test?sslmode=disable (trust auth), as for
# the tests. Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start
set -euo pipefail

runs=3
concurrency=4
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=$2; shift ;;
	--concurrency) concurrency=$2; shift ;;
	-h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/workers.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

. "$(dirname "$0")/pglib.sh"
pg_bench_setup workers TERM
profile_out=()
if "$durlab" profile --help 2>&1 | grep -q -- '--out'; then
	profile_out=(--out "$work/main.prof")
fi

# run BATCHES WORKERS CONCURRENCY: sets wall to the time in ms of one
# profile run on fresh databases, served by WORKERS workers.
run() {
	local batches=$1 workers=$2 conc=$3 sys store i start end
	newdb
	sys=$db
	newdb
	store=$db
	export DBOS_SYSTEM_DATABASE_URL DURLAB_STORE
	DBOS_SYSTEM_DATABASE_URL=$(dburl "$sys")
	DURLAB_STORE=$(dburl "$store")
	local mine=()
	for i in $(seq 1 "$workers"); do
		"$durlab" worker --queue bench --executor-id "bench-w$i" --concurrency "$conc" 2>"$work/w$i.err" &
		mine+=($!)
		pids+=($!)
	done
	for i in $(seq 1 "$workers"); do
		for _ in $(seq 1 300); do grep -q 'serves queue' "$work/w$i.err" && break; sleep 0.02; done
		grep -q 'serves queue' "$work/w$i.err" || { cat "$work/w$i.err" >&2; exit 1; }
	done
	start=$(date +%s%N)
	"$durlab" profile --queue bench --batches "$batches" --pages 10 --page-size 10 --seed 1 \
		"${profile_out[@]}" --output json >"$work/report.json" 2>"$work/profile.err" ||
		{ cat "$work/profile.err" >&2; exit 1; }
	end=$(date +%s%N)
	grep -q '"as_expected":true' "$work/report.json" || { cat "$work/report.json" >&2; exit 1; }
	if grep -q 'runs its batches itself' "$work/profile.err"; then
		echo "bench/workers.sh: the experiment ran batches itself" >&2
		exit 1
	fi
	for pid in "${mine[@]}"; do kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; done
	pids=()
	psql "$admin" -qc "DROP DATABASE $sys WITH (FORCE)" -c "DROP DATABASE $store WITH (FORCE)" >/dev/null
	dbs=()
	wall=$(((end - start) / 1000000))
}

# measure BATCHES WORKERS CONCURRENCY: sets med to the median of --runs runs.
measure() {
	local times=() r
	for r in $(seq 1 "$runs"); do
		run "$@"
		times+=("$wall")
		[ -n "${BENCH_VERBOSE:-}" ] && echo "  batches=$1 workers=$2 concurrency=$3: $wall ms" >&2
	done
	med=$(median "${times[@]}")
}

printf '%-8s %-28s %10s\n' users configuration "wall ms"
for batches in 10 100; do
	users=$((batches * 100))
	measure "$batches" 1 "$concurrency"
	one=$med
	printf '%-8s %-28s %10s\n' "$users" "1 worker, concurrency $concurrency" "$one"
	measure "$batches" 2 "$concurrency"
	two=$med
	printf '%-8s %-28s %10s\n' "$users" "2 workers, concurrency $concurrency" "$two"
	measure "$batches" 1 $((concurrency * 2))
	printf '%-8s %-28s %10s\n' "$users" "1 worker, concurrency $((concurrency * 2))" "$med"
	awk -v a="$one" -v b="$two" -v u="$users" 'BEGIN {printf "%-8s %-28s %10.2f\n", u, "ratio 1 worker / 2 workers", a / b}'
done
echo "($(nproc) CPUs; median of $runs runs; each run on fresh databases, start-up included)"
