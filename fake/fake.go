// Package fake generates the experiments' users: deterministic pages of fake
// people, so that a page is the same on every attempt, in every process.
//
// faker keeps its random sources in package globals, so Page holds a mutex
// while it reseeds them. faker.Name() is not used: it picks a title from the
// clock and would make the same page differ between two processes.
package fake

import (
	"math/rand"
	"sync"

	"github.com/go-faker/faker/v4"
	"github.com/google/uuid"
)

// User is one generated person. ID is derived from ExternalID and Name, so
// generating the same page twice yields the same IDs.
type User struct {
	ID         string `json:"id"`
	ExternalID string `json:"external_id"`
	Name       string `json:"name"`
}

var fakerMu sync.Mutex

// Page returns the users of one page, seeded by the page number as the
// Python original does.
func Page(page, size int) []User {
	fakerMu.Lock()
	defer fakerMu.Unlock()
	src := rand.NewSource(int64(page))
	faker.SetRandomSource(src)
	faker.SetCryptoSource(rand.New(rand.NewSource(int64(page) ^ 0x5eed)))
	users := make([]User, size)
	for i := range users {
		externalID := faker.UUIDHyphenated()
		name := faker.FirstName() + " " + faker.LastName()
		users[i] = User{ID: UserID(externalID, name), ExternalID: externalID, Name: name}
	}
	return users
}

// UserID is UUIDv5 in the DNS namespace of "<external_id>:<name>".
func UserID(externalID, name string) string {
	return uuid.NewSHA1(uuid.NameSpaceDNS, []byte(externalID+":"+name)).String()
}
