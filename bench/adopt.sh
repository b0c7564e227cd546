#!/usr/bin/env bash
# bench/adopt.sh: dedup on Postgres served by 1, 2 and 3 workers, and how
# long the survivors take to finish a dead worker's batch.
#
# Builds durlab from this checkout. Every run gets fresh system and store
# databases, which are dropped afterwards.
#
#   throughput  for 10,000 and 100,000 users (batches of 10 pages x 100
#               users: 10 and 100 batches), 1, 2 and 3 workers: the wall
#               time of `durlab dedup --queue`, start-up included, and the
#               batches per second (median of the runs).
#   adoption    two workers serve 100 batches; one is SIGKILLed in the
#               middle of a batch and never restarted. The time from the
#               kill to the first of its batches finishing on the survivor
#               (DBOS's completed_at), for --adopt-after 5s (the minimum)
#               and 10s (the default).
#
# Usage: bench/adopt.sh [--runs N] [--skip-100k]
#   --runs N      runs of each configuration, median reported (default 3)
#   --skip-100k   only 10,000 users in the throughput part
#
# Needs Go, psql and a Postgres server: DURLAB_TEST_POSTGRES, by default
# postgres://postgres@127.0.0.1:5432/test?sslmode=disable (trust auth), as for
# the tests. Start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start
set -euo pipefail

runs=3
skip_100k=0
while [ $# -gt 0 ]; do
	case $1 in
	--runs) runs=$2; shift ;;
	--skip-100k) skip_100k=1 ;;
	-h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench/adopt.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

. "$(dirname "$0")/pglib.sh"
pg_bench_setup adopt KILL

# fresh: fresh system and store databases, exported for durlab; sys is the
# system database's URL.
fresh() {
	newdb
	sys=$(dburl "$db")
	newdb
	export DBOS_SYSTEM_DATABASE_URL=$sys DURLAB_STORE
	DURLAB_STORE=$(dburl "$db")
}

# dropall: stops the workers and drops the run's databases.
dropall() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
	pids=()
	for db in "${dbs[@]}"; do psql "$admin" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null; done
	dbs=()
}

# workers N ARGS...: starts N workers of queue bench (executor IDs b1..bN).
workers() {
	local n=$1 i
	shift
	for i in $(seq 1 "$n"); do
		"$durlab" worker --queue bench --executor-id "b$i" "$@" 2>"$work/b$i.err" &
		pids+=($!)
	done
	for i in $(seq 1 "$n"); do
		for _ in $(seq 1 500); do grep -q 'serves queue' "$work/b$i.err" && break; sleep 0.02; done
		grep -q 'serves queue' "$work/b$i.err" || { cat "$work/b$i.err" >&2; exit 1; }
	done
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# dedup BATCHES: runs dedup on the workers and checks its count.
dedup() {
	"$durlab" dedup --queue bench --batches "$1" --pages 10 --page-size 100 --seed 1 --crash-prob 0 \
		--output json >"$work/report.json" 2>"$work/dedup.err" || { cat "$work/dedup.err" >&2; exit 1; }
	grep -q '"as_expected":true' "$work/report.json" || { cat "$work/report.json" >&2; exit 1; }
	if grep -q 'runs its batches itself' "$work/dedup.err"; then
		echo "bench/adopt.sh: the experiment ran batches itself" >&2
		exit 1
	fi
}

sizes=(10)
[ "$skip_100k" = 1 ] || sizes+=(100)
printf '%-8s %-8s %10s %12s\n' users workers "wall ms" "batches/s"
for batches in "${sizes[@]}"; do
	for n in 1 2 3; do
		times=()
		for _ in $(seq 1 "$runs"); do
			fresh
			workers "$n"
			start=$(now_ms)
			dedup "$batches"
			times+=($(($(now_ms) - start)))
			dropall
		done
		med=$(median "${times[@]}")
		awk -v u=$((batches * 1000)) -v n="$n" -v ms="$med" -v b="$batches" \
			'BEGIN {printf "%-8s %-8s %10d %12.1f\n", u, n, ms, b / (ms / 1000)}'
	done
done

# adoption AFTER: sets took to the ms from a worker's death to its first
# adopted batch finishing.
adoption() {
	local after=$1 start kill_ms done_ms
	fresh
	workers 2 --adopt-after "$after" --concurrency 2
	"$durlab" dedup --queue bench --batches 100 --pages 10 --page-size 100 --seed 1 --crash-prob 0 \
		--output json >"$work/report.json" 2>"$work/dedup.err" &
	local exp=$!
	# b1 is in a batch when one of them is PENDING on it.
	for _ in $(seq 1 1000); do
		[ "$(psql "$sys" -qAtc "SELECT count(*) FROM dbos.workflow_status WHERE executor_id = 'b1' AND status = 'PENDING'" 2>/dev/null || echo 0)" -gt 0 ] && break
		sleep 0.01
	done
	kill -KILL "${pids[0]}"
	kill_ms=$(now_ms)
	{ wait "${pids[0]}"; } 2>/dev/null || true
	pids=("${pids[@]:1}")
	local held
	held=$(psql "$sys" -qAtc "SELECT string_agg(quote_literal(workflow_uuid), ',') FROM dbos.workflow_status WHERE executor_id = 'b1' AND status = 'PENDING'")
	[ -n "$held" ] || { echo "bench/adopt.sh: b1 held no batch when killed" >&2; exit 1; }
	wait "$exp" || { cat "$work/dedup.err" >&2; exit 1; }
	grep -q '"as_expected":true' "$work/report.json" || { cat "$work/report.json" >&2; exit 1; }
	done_ms=$(psql "$sys" -qAtc "SELECT min(completed_at) FROM dbos.workflow_status WHERE workflow_uuid IN ($held) AND executor_id <> 'b1'")
	took=$((done_ms - kill_ms))
	dropall
}

echo
printf '%-12s %24s\n' adopt-after "death to first adopted batch done (ms)"
for after in 5s 10s; do
	times=()
	for _ in $(seq 1 "$runs"); do
		adoption "$after"
		times+=("$took")
	done
	printf '%-12s %24s   (runs: %s)\n' "$after" "$(median "${times[@]}")" "${times[*]}"
done
echo "($(nproc) CPUs; median of $runs runs; each run on fresh databases)"
