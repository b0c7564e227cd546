#!/bin/sh
# Builds a static durlab binary (cgo for mattn/go-sqlite3, linked statically
# against glibc). The Dockerfile and .ci/run both call this script, so CI
# builds exactly what the image ships.
set -eu
out=${1:-durlab}
CGO_ENABLED=1 go build -trimpath \
	-tags 'osusergo netgo sqlite_omit_load_extension' \
	-ldflags '-s -w -linkmode external -extldflags "-static"' \
	-o "$out" .
