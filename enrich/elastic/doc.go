// Package elastic reads alerts from Elasticsearch or OpenSearch and writes enrichment back.
// Which of the two answers is detected at the first request; everything that differs
// between them is in opensearch.go.
//
// Reading uses a point in time and search_after over the configured index patterns
// (hidden indices included, as Kibana's alert indices are hidden), fetching only the
// _source fields the pipeline's stages read. Writing uses _bulk partial updates guarded by
// if_seq_no/if_primary_term, so a document changed since it was read (an analyst closing
// the alert) is re-read and re-enriched rather than overwritten; each bulk item is sorted
// by its result (updated, noop, 409 conflict, 429/5xx retry, other 4xx failed).
//
// Costs: one search page and one bulk request per batch; a 409 costs one _mget of the
// conflicting documents. The field mapping of enricher's root object is checked before
// every pass and put on any matching index that lacks it (Kibana's alert indices are
// "dynamic": false, so unmapped fields would be neither searchable nor aggregatable, and
// new backing indices appear at every rollover).
//
// Caveat: Elasticsearch's partial update merges objects and replaces arrays, so the root
// object is always written whole.
package elastic
