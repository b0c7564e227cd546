package cmd_test

import (
	"database/sql"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/durlab/durlab/internal/pgtest"
)

// keyValue writes a postgres:// URL as libpq's key=value connection string.
func keyValue(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	kv := []string{"host=" + u.Hostname(), "dbname='" + strings.TrimPrefix(u.Path, "/") + "'", "user=" + u.User.Username()}
	if p := u.Port(); p != "" {
		kv = append(kv, "port="+p)
	}
	for k, v := range u.Query() {
		kv = append(kv, k+"="+v[0])
	}
	return strings.Join(kv, "  ")
}

// TestKeyValueConnectionStrings: both databases given as libpq key=value
// strings are used as the Postgres databases they name, and no file is made.
func TestKeyValueConnectionStrings(t *testing.T) {
	sys, st := pgtest.Database(t), pgtest.Database(t)
	dir := t.TempDir()
	code, stdout, stderr := durlab(t, dir, nil, "basic", "--system-db", keyValue(t, sys), "--store", keyValue(t, st), "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	var rep struct {
		WorkflowID string `json:"workflow_id"`
		Rows       int64  `json:"rows"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Rows != 20 {
		t.Fatalf("report %s: %v", stdout, err)
	}
	for _, c := range []struct{ url, query string }{
		{st, `SELECT count(*) FROM users WHERE workflow_id = $1`},
		{sys, `SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid = $1 AND status = 'SUCCESS'`},
	} {
		db, err := sql.Open("pgx", c.url)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db.QueryRow(c.query, rep.WorkflowID).Scan(&n); err != nil || n == 0 {
			t.Errorf("%s: %d (%v), want the run's rows there", c.query, n, err)
		}
		db.Close()
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files made in the working folder: %v", entries)
	}
}
