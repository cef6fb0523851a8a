# swarm-agent. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/swarm-agent/swarm-agent/agent.version=$(VERSION) -X github.com/swarm-agent/swarm-agent/agent.commit=$(COMMIT)
GOLANGCI_VERSION ?= v2.6.2
# A count, not a duration: go1.26's fuzz coordinator can report its own -fuzztime deadline as a
# failure ("context deadline exceeded", no crasher; golang/go#75804, fixed in go1.27). A count has
# no wall-clock deadline, so a loaded machine only makes it slower.
FUZZTIME ?= 20000x

.PHONY: help build test test-unit test-integration fuzz bench lint fmt tidy-check vuln package demo prepare clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## static, stripped binary with version and commit: bin/swarm-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/swarm-agent .

prepare: build ## install what the tests need (Docker via `swarm-agent install`, test bed packages, moto check, Consul, Packer, the instance root file system)
	bash tools/prepare.sh --all

test: prepare ## THE test command: every unit, integration and fuzz-seed test on real engines, moto and Consul
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 70m ./... 2>&1 | tee /tmp/swarm-agent-test.log
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

test-unit: ## unit tests only (no root, no engines)
	SWARM_AGENT_TEST_UNIT_ONLY=1 $(GO) test -count=1 -race ./...

test-integration: prepare ## integration tests only
	$(GO) test -count=1 -run 'Integration' -timeout 40m ./...

fuzz: ## run every fuzz target briefly (FUZZTIME executions each)
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

bench: build ## performance report (boot times, API calls per boot, 1000-agent scale run, binary size)
	bash tools/bench.sh

lint: ## golangci-lint (pinned)
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION) run --allow-parallel-runners ./...

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

tidy-check: ## go.mod and go.sum are tidy
	$(GO) mod tidy -diff

vuln: ## govulncheck
	$(GO) run golang.org/x/vuln/cmd/govulncheck@latest ./...

package: build ## .deb and .rpm into dist/
	bash packaging/package.sh

# The demo prepares only what it runs: Consul only for -mode=consul (also written -mode consul).
DEMO_PREPARE = $(if $(filter consul,$(subst =, ,$(DEMO_FLAGS))),--consul)

demo: build ## local cluster: 3 managers + 2 workers on real engines, moto and the AWS front; boot, scale-in, clean up (DEMO_FLAGS=-mode=consul: a real Consul agent)
	bash tools/prepare.sh $(DEMO_PREPARE)
	$(GO) run ./internal/cmd/demo $(DEMO_FLAGS)

clean: ## remove build output
	rm -rf bin/swarm-agent dist/
