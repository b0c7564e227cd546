#!/bin/sh
# Prints the -ldflags -X settings that stamp durlab's version and commit
# (see cmd/version.go). DURLAB_VERSION and DURLAB_COMMIT override what git
# says, for builds without a .git folder (the Dockerfile's build arguments).
# Go records no VCS information itself where GOFLAGS has -buildvcs=false, so
# the stamp is what makes `durlab --version` name a version.
set -eu
cd "$(dirname "$0")/.."
version=${DURLAB_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || true)}
commit=${DURLAB_COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
if [ -n "$commit" ] && [ -z "${DURLAB_COMMIT:-}" ] && [ -n "$(git status --porcelain 2>/dev/null | head -1)" ]; then
	commit="$commit-dirty"
fi
pkg=github.com/durlab/durlab/cmd
flags=""
[ -n "$version" ] && flags="-X $pkg.stampedVersion=$version"
[ -n "$commit" ] && flags="$flags -X $pkg.stampedCommit=$commit"
echo "$flags"
