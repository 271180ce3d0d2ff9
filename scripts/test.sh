#!/usr/bin/env bash
# scripts/test.sh: the single command that runs the whole test suite (CI runs exactly this).
#
#   bash scripts/test.sh                         # everything, every module of go.work
#   bash scripts/test.sh -run TestX ./relay/...  # extra args are passed to go test
#
# The repository is a Go workspace (go.work): the library module at the root and a module per
# heavy dependency (CONTRIBUTING.md lists them). `./...` names only the root module's packages,
# so the script names every module's directory instead (`./... ./cmd/outbox/... ...`).
#
# Steps, from the repository root: scripts/services.sh (install/start PostgreSQL, MariaDB, Redis,
# RabbitMQ, Mosquitto, NATS), `go vet`, `golangci-lint run` (v2.15.0, configured by
# .golangci.yml; installed with `go install` into $(go env GOPATH)/bin when that is missing or
# another version), then `go test -race -count=1 -timeout 20m`, each over every module (the
# chaos module's tests last, on their own: they load both cores for minutes); before the tests,
# `promtool check rules` and `promtool test rules` on deploy/prometheus (Debian's prometheus
# package is installed for promtool when it is missing). The dashboard's browser test
# (integration/dashboard_test.go) drives Debian's chromium headless: the script installs the
# chromium package when it is missing and exports BROWSER_TEST=1, so that
# the test fails instead of skipping should the browser be absent. If any
# arguments are given they REPLACE the package list of go test (so name the packages too, as
# above); go vet and golangci-lint always check every module. Exits non-zero on the first
# failure, a lint finding included.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
export CGO_ENABLED=1 # the race detector needs cgo
unset GOWORK         # the repository's go.work

bash scripts/services.sh

# Every module of the workspace, as directory patterns: ./... ./bench/... ./chaos/... ...
mapfile -t modules < <(go list -m -f '{{.Dir}}' | sed "s|^$PWD|.|; s|\$|/...|")

echo "== go vet (${#modules[@]} modules)"
go vet "${modules[@]}"

# golangci-lint, pinned: another version may enable other checks or read the config otherwise.
lint_version=2.15.0
lint_bin="$(go env GOBIN)"
lint_bin="${lint_bin:-$(go env GOPATH | cut -d: -f1)/bin}/golangci-lint" # go install's target
if [[ "$("$lint_bin" version --short 2>/dev/null || true)" != "$lint_version" ]]; then
	echo "== go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$lint_version"
	GOWORK=off go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$lint_version"
fi
echo "== golangci-lint run (${#modules[@]} modules)"
"$lint_bin" run "${modules[@]}"

# The alert rules of deploy/: promtool (Debian's prometheus package, without its recommends).
if ! command -v promtool >/dev/null 2>&1; then
	echo "== apt-get install prometheus (for promtool)"
	apt-get install -y -q --no-install-recommends prometheus >/dev/null 9>&- ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends prometheus >/dev/null 9>&-; } ||
		{ echo "installing prometheus (promtool) failed" >&2; exit 1; }
fi
# The dashboard's browser test: Debian's chromium, headless (without its recommends).
if ! command -v chromium >/dev/null 2>&1; then
	echo "== apt-get install chromium (for the dashboard's browser test)"
	apt-get install -y -q --no-install-recommends chromium >/dev/null 9>&- ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends chromium >/dev/null 9>&-; } ||
		{ echo "installing chromium failed" >&2; exit 1; }
fi
export BROWSER_TEST=1

echo "== promtool check rules, promtool test rules (deploy/prometheus)"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

if (($# > 0)); then
	echo "== go test -race -count=1 -timeout 20m $*"
	go test -race -count=1 -timeout 20m "$@"
	exit
fi
# Every module but chaos, then chaos alone: its profiles run relay and consumer processes,
# brokers and fault loops for minutes, and on two cores they would starve the timing of the
# other modules' tests (and the other modules' tests theirs).
others=()
for m in "${modules[@]}"; do
	[[ "$m" == ./chaos/... ]] || others+=("$m")
done
echo "== go test -race -count=1 -timeout 20m ${others[*]}"
go test -race -count=1 -timeout 20m "${others[@]}"
echo "== go test -race -count=1 -timeout 20m ./chaos/..."
go test -race -count=1 -timeout 20m ./chaos/...
