# enricher: see README.md. `make demo` runs the main job on a local Elasticsearch;
# `make test` runs every test (unit and integration) against a real one.
SHELL := bash
GO    ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
ES_PORT ?= 9200
export ELASTICSEARCH_URL ?= http://127.0.0.1:$(ES_PORT)

PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.5.1
PROTO_BIN                  := $(CURDIR)/bin

.PHONY: all build test unit integration vet es-up es-down demo bench proto clean

all: build

## build: the enricher binary and the example plugin, in bin/
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/enricher ./cmd/enricher
	$(GO) build -o bin/enricher-asset-inventory ./plugin/examples/assetinventory/cmd/enricher-asset-inventory

## es-up / es-down: a local single-node Elasticsearch on 127.0.0.1:$(ES_PORT)
es-up:
	ES_PORT=$(ES_PORT) scripts/es-up.sh
es-down:
	ES_PORT=$(ES_PORT) scripts/es-down.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

## unit: tests that need no server
unit:
	$(GO) test -race ./...

## test: everything — unit tests and integration tests against the real Elasticsearch
## (started if needed), Prometheus and promtool (installed from Debian if needed).
test: build vet es-up
	$(GO) test -race -tags integration -timeout 20m ./...

integration: test

## demo: Elasticsearch, sample alerts, one enrichment run, an enriched alert on screen
demo: build es-up
	scripts/demo.sh

## bench: side-by-side figures (see README "Performance")
bench: build es-up
	$(GO) test -run '^$$' -bench . -benchmem ./enrich/ ./rules/
	$(GO) test -run '^$$' -bench 'BenchmarkEnrich$$' ./plugin/
	$(GO) run ./rules/internal/loadbench
	$(GO) run ./enrich/internal/bench -bin bin/enricher

## proto: regenerate plugin/pluginv1 from plugin/proto (offline: Debian protoc + pinned Go generators)
proto:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install -y protobuf-compiler" >&2; exit 1; }
	GOBIN=$(PROTO_BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(PROTO_BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	protoc -I plugin/proto \
		--plugin=protoc-gen-go=$(PROTO_BIN)/protoc-gen-go \
		--plugin=protoc-gen-go-grpc=$(PROTO_BIN)/protoc-gen-go-grpc \
		--go_out=. --go_opt=module=github.com/enricher-dev/enricher \
		--go-grpc_out=. --go-grpc_opt=module=github.com/enricher-dev/enricher \
		plugin/proto/enricher/plugin/v1/plugin.proto

clean:
	rm -rf bin
