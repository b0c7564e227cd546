package fake

import (
	"os"
	"os/exec"
	"testing"
)

// The golden user pins the generator: if faker or our use of it changes, the
// IDs written by earlier runs would no longer match, and recovery would write
// different users than the first execution did.
func TestPageGolden(t *testing.T) {
	got := Page(3, 2)[1]
	want := User{ID: "2914f929-8d7f-5b8b-b45c-318cf5a705b5", ExternalID: "d1d9fd0f-9d6d-4720-bb95-58d19a85a621", Name: "Christy Stoltenberg"}
	if got != want {
		t.Fatalf("Page(3,2)[1] = %+v, want %+v", got, want)
	}
}

func TestPageIsDeterministicAndPagesDiffer(t *testing.T) {
	a, b := Page(7, 10), Page(7, 10)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("user %d differs between two calls: %+v vs %+v", i, a[i], b[i])
		}
	}
	other := Page(8, 10)
	if a[0] == other[0] {
		t.Fatalf("pages 7 and 8 start with the same user %+v", a[0])
	}
	seen := map[string]bool{}
	for _, u := range append(a, other...) {
		if seen[u.ID] {
			t.Fatalf("duplicate ID %s across pages 7 and 8", u.ID)
		}
		seen[u.ID] = true
	}
}

func TestUserIDIsUUIDv5OfExternalIDAndName(t *testing.T) {
	// Computed independently with Python: uuid.uuid5(uuid.NAMESPACE_DNS, "abc:Ann Lee").
	if got, want := UserID("abc", "Ann Lee"), "e450d837-6c2f-5708-8f2d-2e3893596c21"; got != want {
		t.Fatalf("UserID = %s, want %s", got, want)
	}
}

// A page must be the same in another process: faker.Name() was not, because
// it reads the clock.
func TestPageIsSameInAnotherProcess(t *testing.T) {
	if os.Getenv("FAKE_PRINT_PAGE") == "1" {
		u := Page(5, 3)[2]
		os.Stdout.WriteString(u.ID + "|" + u.Name)
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPageIsSameInAnotherProcess$")
	cmd.Env = append(os.Environ(), "FAKE_PRINT_PAGE=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	u := Page(5, 3)[2]
	if string(out) != u.ID+"|"+u.Name {
		t.Fatalf("child process generated %q, this one %q", out, u.ID+"|"+u.Name)
	}
}
