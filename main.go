// Command durlab is a laboratory for durable execution on DBOS Transact.
package main

import (
	"os"

	"github.com/durlab/durlab/cmd"
)

func main() {
	os.Exit(cmd.Main())
}
