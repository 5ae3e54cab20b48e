// Package plugin runs enrichment stages as separate processes over hashicorp/go-plugin,
// so teams can add fields to alerts (asset criticality, owners, ticket links) without
// forking enricher, in any language that speaks gRPC.
//
// Plugin authors in Go implement Enricher and call Serve from main; authors in other
// languages implement the gRPC service in proto/enricher/plugin/v1/plugin.proto and the
// go-plugin handshake (docs/plugins.md). The daemon builds a Host per configured plugin
// with NewHost; a Host is an enrich.Stage.
//
// Layers: proto/ (the protocol) -> pluginv1 (generated, `make proto`) -> grpc.go (thin
// gRPC adapters) -> convert.go (to and from enrich.Alert, enrich.Patch, Info). Authors
// see only the enrich types.
//
// Wire format: alerts and patches cross as JSON bytes, not google.protobuf.Struct.
// Sources come from Elasticsearch as JSON and patches go back as JSON, so bytes avoid two
// conversions; Struct turns every number into a double (int64 values above 2^53 lose
// precision) and is clumsy in most languages, while every language has a JSON decoder.
// The Go side decodes numbers as json.Number.
//
// Costs: each batch is one gRPC round trip over a local socket with mutual TLS, plus a
// JSON encode and decode of every alert (reduced to the plugin's declared fields) and
// patch on both sides. About 18µs per alert at batch 500 on a 2-CPU machine, against
// under 2µs in-process, and 220µs for a batch of one: batch. See BenchmarkEnrich.
//
// Caveats: a plugin process serves one Host; configuration changes need a restart. The
// Host restarts a crashed process with backoff and resends the batch (at most 3 sends per
// call), kills and restarts a process that exceeds its timeout, and otherwise returns
// errors wrapping ErrPluginUnavailable (and enrich.ErrStageUnavailable) so that the
// pipeline keeps the alerts pending or deferred: no alert is lost, some wait. Plugins run
// with a reduced environment (no Elasticsearch credentials) and ignore SIGINT; Close
// stops them.
package plugin
