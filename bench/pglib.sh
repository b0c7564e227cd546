# bench/pglib.sh: what the Postgres benchmarks share. Sourced, not run:
#   . "$(dirname "$0")/pglib.sh"; pg_bench_setup NAME KILLSIG
# checks the server, makes $work (removed on exit with the databases newdb
# made and the processes in pids, sent KILLSIG), and builds $durlab.

admin=${DURLAB_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}

pg_bench_setup() {
	local name=$1
	bench_kill=$2
	if ! psql "$admin" -qAtc 'SELECT 1' >/dev/null 2>&1; then
		echo "bench/$name.sh: no Postgres server at ${admin%%\?*}" >&2
		echo "start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start" >&2
		exit 2
	fi
	root=$(cd "$(dirname "$0")/.." && pwd)
	work=$(mktemp -d "${TMPDIR:-/tmp}/durlab-$name.XXXXXX")
	pids=()
	dbs=()
	trap pg_bench_cleanup EXIT
	echo "building durlab..." >&2
	(cd "$root" && go build -o "$work/durlab" .)
	durlab=$work/durlab
}

pg_bench_cleanup() {
	for pid in "${pids[@]}"; do kill "-$bench_kill" "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for db in "${dbs[@]}"; do psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
	rm -rf "$work"
}

# dburl NAME: the URL of database NAME on the admin URL's server.
dburl() { echo "$admin" | sed -E "s#^(postgres(ql)?://[^/]*)/[^?]*#\1/$1#"; }

# newdb: creates a scratch database and sets db to its name. (No command
# substitution: a subshell would neither record it for the clean-up nor
# run the clean-up when it fails.)
newdb() {
	db=durlab_bench_$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
	dbs+=("$db")
}

# median N...: the median of the numbers.
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
