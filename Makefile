# sandbox — the two commands: `make up` (set up this machine and bring the sandbox up) and
# `make test` (everything CI runs). Both work on a fresh Debian/Ubuntu machine as root.
SHELL := /bin/bash
GO ?= go
NAME ?= sandbox
E2E_NAME ?= sandbox-e2e
# Bounded fuzzing in CI: each target runs this long.
FUZZTIME ?= 15s
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/inference-sandbox/sandbox/internal/versions.Sandbox=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all build generate setup node-image up down status test unit fuzz e2e e2e-nightly lint clean

all: build

## build: compile bin/sandbox and bin/stackd (static)
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/sandbox ./cmd/stackd

## generate: regenerate the API types' DeepCopy methods (controller-gen, from the Go module proxy)
generate:
	$(GO) generate ./internal/components/authz/ ./internal/components/inferenceset/

## setup: install and start what the sandbox needs on this machine (Docker engine, debootstrap)
setup:
	hack/setup-host.sh

## node-image: build (or reuse) the offline kind node image
node-image: setup build
	bin/sandbox node-image build

## up: everything from scratch: machine set-up, node image, cluster, stack (offline profile)
up: setup build
	bin/sandbox up --name $(NAME) --profile offline

## down: delete the sandbox
down: build
	bin/sandbox down --name $(NAME)

status: build
	bin/sandbox status --name $(NAME)

## test: node image (its binaries also serve envtest), unit + component tests, bounded fuzzing, e2e on a real offline cluster
test: setup build node-image unit fuzz e2e
# The node image's build leaves kube-apiserver and etcd behind: the real-API-server tests must run.
test: export SANDBOX_REQUIRE_APISERVER := 1

unit:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

# Each fuzz target of the repository, found by name, runs for FUZZTIME.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

## e2e: the PR tier of the e2e suite; brings up (or reuses) $(E2E_NAME) and deletes it at the end
e2e: build
	SANDBOX_BIN=$(CURDIR)/bin/sandbox SANDBOX_STACKD=$(CURDIR)/bin/stackd E2E_NAME=$(E2E_NAME) \
	  $(GO) test -tags e2e -count=1 -timeout 60m -v ./test/e2e -args --labels tier=pr

e2e-nightly: build
	SANDBOX_BIN=$(CURDIR)/bin/sandbox SANDBOX_STACKD=$(CURDIR)/bin/stackd E2E_NAME=$(E2E_NAME) \
	  $(GO) test -tags e2e -count=1 -timeout 90m -v ./test/e2e -args --labels tier=nightly

clean:
	rm -rf bin
