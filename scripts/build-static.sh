#!/bin/sh
# Builds a static durlab binary (cgo for mattn/go-sqlite3, linked statically
# against glibc), its version stamped (scripts/version-ldflags.sh). The
# Dockerfile and .ci/run both call this script, so CI builds exactly what the
# image ships.
set -eu
out=${1:-durlab}
stamp=$("$(dirname "$0")/version-ldflags.sh")
CGO_ENABLED=1 go build -trimpath \
	-tags 'osusergo netgo sqlite_omit_load_extension' \
	-ldflags "-s -w -linkmode external -extldflags \"-static\" $stamp" \
	-o "$out" .
