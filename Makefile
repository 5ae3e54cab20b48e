# enricher: see README.md. `make demo` runs the main job on a local Elasticsearch;
# `make test` runs every test (unit and integration) against a real one.
SHELL := bash
GO    ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
ES_PORT ?= 9200
export ELASTICSEARCH_URL ?= http://127.0.0.1:$(ES_PORT)
# Other servers for trying enricher against (see README "Development")
ES9_PORT           ?= 9210
ES9_TRANSPORT_PORT ?= $(shell expr $(ES9_PORT) + 200)
ES9_VERSION        ?= 9.5.4
OS_PORT            ?= 9201
CLUSTER_URLS       ?= http://127.0.0.1:9250,http://127.0.0.1:9251,http://127.0.0.1:9252

PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.5.1
PROTO_BIN                  := $(CURDIR)/bin

.PHONY: all build test test-deps unit integration vet es-up es-down es9-up es9-down \
	opensearch-up opensearch-down cluster-up cluster-down demo demo-replicas bench fuzz proto clean

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

## es9-up / es9-down: Elasticsearch $(ES9_VERSION) (Java 21+, found in /usr/lib/jvm) on 127.0.0.1:$(ES9_PORT)
es9-up:
	ES_PORT=$(ES9_PORT) ES_VERSION=$(ES9_VERSION) ES_TRANSPORT_PORT=$(ES9_TRANSPORT_PORT) scripts/es-up.sh
es9-down:
	ES_PORT=$(ES9_PORT) scripts/es-down.sh

## opensearch-up / opensearch-down: a local single-node OpenSearch 2.19 on 127.0.0.1:$(OS_PORT)
opensearch-up:
	OS_PORT=$(OS_PORT) scripts/opensearch-up.sh
opensearch-down:
	OS_PORT=$(OS_PORT) scripts/opensearch-down.sh

## cluster-up / cluster-down: a three-node Elasticsearch cluster on 127.0.0.1:9250-9252
## (CLUSTER_PORTS / CLUSTER_BASE_PORT); one node: scripts/cluster-node.sh stop|kill|start N
cluster-up:
	scripts/cluster-up.sh
cluster-down:
	scripts/cluster-down.sh

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

## unit: tests that need no server
unit:
	$(GO) test -race ./...

## test-deps: prometheus/promtool (Debian) and sigma-cli (PyPI), installed when missing
test-deps:
	scripts/test-deps.sh

## test: everything — unit tests and integration tests against the real Elasticsearch
## (started if needed), Prometheus and promtool (installed from Debian if needed); the
## store's suite again on Elasticsearch $(ES9_VERSION) and on OpenSearch 2.19.
# One package at a time (-p 1): the integration packages start plugin processes and
# extra Elasticsearch nodes with timeouts of a few seconds, and on a two-core machine
# running them side by side under -race starves them.
#
# Then the store's integration suites again against Elasticsearch $(ES9_VERSION) (make
# es9-up), leaving out the tests that start their own 8.19 nodes.
ES9_SKIP := ^TestServerRestartMidRun|^TestElasticsearchDownAtStart|^TestLeastPrivilegeOverHTTPS|^TestOpenSearch
#
# Then the same suites once more against OpenSearch 2.19 (make opensearch-up, stopped
# afterwards): enricher detects the server (GET /) and speaks its dialect (README
# "Elasticsearch and OpenSearch"). Left out: the one of Elasticsearch's security (roles,
# API keys, TLS); TestServerRestartMidRun restarts a dedicated OpenSearch node. There only, the
# TestOpenSearch* tests (Wazuh 5 findings in a data stream, the OpenSearch Dashboards
# saved objects, the security plugin's roles over TLS on a 2.19.4 node of their own),
# which the other passes leave out.
OS_SKIP := ^TestLeastPrivilegeOverHTTPS
#
# The peak-memory tests (memtest.PeakRSS) cannot measure under -race, which multiplies
# memory use: they run once more without it.
MEMORY_TESTS := TestHostileTOMLMemory|TestImportLargeSourceBounded|TestDecodeReaderBoundedMemory
#
# Last, the replica tests (TestCluster*: real daemons, one SIGKILLed, one Elasticsearch
# node killed and started again) on the three-node cluster of make cluster-up, stopped
# afterwards; the other passes leave them out. Without -race: they measure takeover.
CLUSTER_TESTS := ^TestCluster
test: build vet test-deps es-up
	$(GO) test -race -tags integration -p 1 -timeout 30m -skip '$(CLUSTER_TESTS)|^TestOpenSearch' ./...
	$(GO) test -count=1 -run '$(MEMORY_TESTS)' ./rules/...
	$(MAKE) --no-print-directory es9-up
	ELASTICSEARCH_URL=http://127.0.0.1:$(ES9_PORT) $(GO) test -race -tags integration -count=1 -p 1 -timeout 15m \
		-skip '$(ES9_SKIP)|$(CLUSTER_TESTS)' ./enrich/elastic/ ./cmd/enricher/
	$(MAKE) --no-print-directory opensearch-up
	ELASTICSEARCH_URL=http://127.0.0.1:$(OS_PORT) $(GO) test -race -tags integration -count=1 -p 1 -timeout 15m \
		-skip '$(OS_SKIP)|$(CLUSTER_TESTS)' ./enrich/elastic/ ./cmd/enricher/
	ELASTICSEARCH_URL=http://127.0.0.1:$(OS_PORT) $(GO) test -race -tags integration -count=1 \
		-run 'TestIntegrationAlertCounts' ./rules/coverage/
	OPENSEARCH_URL=http://127.0.0.1:$(OS_PORT) $(GO) test -race -tags integration -count=1 -timeout 10m \
		-run '^TestOpenSearch' ./dashboards/
	$(MAKE) --no-print-directory opensearch-down
	$(MAKE) --no-print-directory cluster-up
	CLUSTER_URL=$(CLUSTER_URLS) $(GO) test -tags integration -count=1 -timeout 20m -run '$(CLUSTER_TESTS)' ./cmd/enricher/
	$(MAKE) --no-print-directory cluster-down

integration: test

## demo: Elasticsearch, sample alerts, one enrichment run, an enriched alert on screen
demo: build es-up
	scripts/demo.sh

## demo-replicas: three replicas sharing the work on the three-node cluster, one killed
demo-replicas: build
	scripts/demo-replicas.sh

## bench: side-by-side figures (see README "Performance")
# The replica figures run on the three-node cluster (make cluster-up; left running), the
# end-to-end figures on OpenSearch too (make opensearch-up; left running as well).
bench: build es-up cluster-up opensearch-up
	$(GO) test -run '^$$' -bench . -benchmem ./enrich/ ./rules/
	$(GO) test -run '^$$' -bench 'BenchmarkEnrich$$' ./plugin/
	$(GO) run ./rules/internal/loadbench
	$(GO) run ./enrich/internal/bench -bin bin/enricher -cluster $(CLUSTER_URLS) \
		-opensearch http://127.0.0.1:$(OS_PORT)

## fuzz: run each fuzz target for FUZZTIME (default 30s each); failing inputs land in
## PACKAGE/testdata/fuzz/NAME/ as regression seeds. Add a target by appending package:FuzzName.
FUZZTIME ?= 30s
FUZZ_TARGETS ?= \
	enrich/config:FuzzDecode \
	rules/ctid:FuzzDecode \
	rules:FuzzDecodeSource \
	rules/coverage:FuzzParseTOML \
	rules/coverage:FuzzParseYAML \
	rules/coverage:FuzzParseExport \
	rules/coverage:FuzzParse \
	enrich:FuzzSplice \
	enrich/elastic:FuzzParseBulk
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) scripts/fuzz.sh $(FUZZ_TARGETS)

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
