// Package enrich is enricher's domain: alerts, the ATT&CK technique IDs found on them,
// enrichment stages and the pipeline that runs them.
//
// It imports neither Elasticsearch nor gRPC: sources and sinks live in enrich/elastic,
// plugin transport in plugin/. Everything here is pure and table-tested.
//
// Costs: extracting technique IDs walks only the configured field paths of an alert's
// _source (both dotted top-level keys and nested objects), so its cost does not grow with
// the size of the alert. The ATT&CK stage reuses one pre-built document per technique set
// and ruleset, so enriching an alert is a map lookup plus a small merge.
//
// Caveats: a stage sees a read-only view of the alert. Patches are merged into
// Elasticsearch as partial documents: objects merge, arrays and scalars replace. A stage
// must therefore always write its whole namespace object, never a part of it.
package enrich
