#!/usr/bin/env bash
# scripts/test.sh: the single command that runs the whole test suite (CI runs exactly this).
#
#   bash scripts/test.sh                         # everything: go test ... ./...
#   bash scripts/test.sh -run TestX ./relay/...  # extra args are passed to go test
#
# Steps, from the repository root: scripts/services.sh (install/start PostgreSQL, MariaDB, Redis,
# RabbitMQ, Mosquitto, NATS), `go vet ./...`, then `go test -race -count=1 -timeout 20m ./...`.
# If any arguments are given they REPLACE ./... (so name the packages too, as above); go vet
# always checks ./... . Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
export CGO_ENABLED=1 # the race detector needs cgo

bash scripts/services.sh

echo "== go vet ./..."
go vet ./...

if (($# == 0)); then
	set -- ./...
fi
echo "== go test -race -count=1 -timeout 20m $*"
go test -race -count=1 -timeout 20m "$@"

# The side-by-side benchmark is a module of its own (bench/go.mod): its helpers' unit tests.
if (($# == 1)) && [[ $1 == ./... ]]; then
	echo "== (cd bench && go vet ./... && go test -race -count=1 ./...)"
	(cd bench && go vet ./... && go test -race -count=1 ./...)
fi
