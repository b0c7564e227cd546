#!/bin/sh
# Installs durlab into $(go env GOPATH)/bin like `go install .`, with its
# version and commit stamped so that `durlab --version` names them.
set -eu
cd "$(dirname "$0")/.."
go install -ldflags "$(./scripts/version-ldflags.sh)" .
echo "installed $(go env GOPATH)/bin/durlab: $("$(go env GOPATH)/bin/durlab" --version)"
