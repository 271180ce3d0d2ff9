#!/usr/bin/env bash
# scripts/test.sh: the single command that runs the whole test suite (CI runs exactly this).
#
#   bash scripts/test.sh                         # everything: go test ... ./...
#   bash scripts/test.sh -run TestX ./relay/...  # extra args are passed to go test
#
# Steps, from the repository root: scripts/services.sh (install/start PostgreSQL, MariaDB, Redis,
# RabbitMQ, Mosquitto, NATS), `go vet ./...`, `golangci-lint run ./...` (v2.15.0, configured by
# .golangci.yml; installed with `go install` into $(go env GOPATH)/bin when that is missing or
# another version), then `go test -race -count=1 -timeout 20m ./...`. If any arguments are given
# they REPLACE ./... (so name the packages too, as above); go vet and golangci-lint always check
# ./... . Exits non-zero on the first failure, a lint finding included.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
export CGO_ENABLED=1 # the race detector needs cgo

bash scripts/services.sh

echo "== go vet ./..."
go vet ./...

# golangci-lint, pinned: another version may enable other checks or read the config otherwise.
lint_version=2.15.0
lint_bin="$(go env GOBIN)"
lint_bin="${lint_bin:-$(go env GOPATH | cut -d: -f1)/bin}/golangci-lint" # go install's target
if [[ "$("$lint_bin" version --short 2>/dev/null || true)" != "$lint_version" ]]; then
	echo "== go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$lint_version"
	go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$lint_version"
fi
echo "== golangci-lint run ./..."
"$lint_bin" run ./...

if (($# == 0)); then
	set -- ./...
fi
echo "== go test -race -count=1 -timeout 20m $*"
go test -race -count=1 -timeout 20m "$@"

# The side-by-side benchmark is a module of its own (bench/go.mod): vet, lint (the root's
# .golangci.yml) and its helpers' unit tests.
if (($# == 1)) && [[ $1 == ./... ]]; then
	echo "== (cd bench && go vet ./... && golangci-lint run ./... && go test -race -count=1 ./...)"
	(cd bench && go vet ./... && "$lint_bin" run ./... && go test -race -count=1 ./...)
fi
