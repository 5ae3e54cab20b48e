// Package rules holds enricher's mapping content and the loader that turns it into a
// read-only index from ATT&CK technique ID to the controls, product detections and other
// mappings CTID publishes for it.
//
// Content lives in YAML files, one per framework release (see builtin/), plus three tables
// (tables/aliases.yaml, tables/revoked.yaml, tables/mapping_types.yaml). The built-in
// T1021.002 content and the tables are embedded in the binary; a --rules folder replaces the
// built-in mapping files and extends the tables.
//
// Costs: loading is done once at start (all shared CTID files, ~17 MB of JSON, load in well
// under a second); lookups are map reads with no allocation. A Ruleset is immutable after
// Load and safe for concurrent use. CTID JSON is decoded a row at a time, so memory follows
// the mappings kept, not the file; rules YAML is decoded whole (about 25 times its size).
// Every input is bounded: MaxSourceBytes, MaxYAMLBytes, MaxTableBytes, MaxYAMLKeys,
// MaxYAMLNesting, and ctid.MaxDepth, MaxRowBytes, MaxMetadataBytes; only regular files are
// opened (a named pipe is refused, not waited on). Import writes all of a run's files or none.
//
// Caveat: normalization (control IDs, mapping types, capability aliases, alert IDs pulled out
// of free-text comments) happens at load time, so every consumer sees one canonical form.
package rules
