// Package coverage answers, for each ATT&CK technique, which detection rules detect it, which
// controls and product detections the loaded CTID mappings give it, and where the gaps are.
//
// It reads rule files of several shapes, recognized from their content rather than their
// extension: Elastic detection-rules TOML ([[rule.threat]]), Elastic hunting TOML ([hunt] mitre),
// Elastic Defend endpoint TOML (top-level [[threat]]), Kibana detection-rules export NDJSON,
// Sigma YAML (attack.tNNNN tags) and Microsoft Sentinel YAML (relevantTechniques, and the
// Defender XDR custom-detection form). Scan walks folders and parses files in parallel with a
// bounded worker pool; Build joins the rules with a rules.Ruleset (and, optionally, alert counts
// per technique from Elasticsearch) into a Report, which the Write* functions render as a table,
// Markdown, JSON, CSV or an ATT&CK Navigator 4.5 layer.
//
// Costs: parsing is CPU-bound TOML/YAML decoding; on one core a few thousand rule files take
// about a second, and the pool scales with GOMAXPROCS (see BenchmarkScan). TOML and YAML
// files are read whole, up to MaxRuleFileBytes; a Kibana export is read a line at a time.
// The TOML decoder's memory grows with the square of key depth, so TOML is pre-scanned for
// MaxTOMLDepth and MaxTOMLValues before decoding; YAML is checked for MaxYAMLNodes,
// MaxYAMLKeys and MaxNesting between parsing and decoding; and the bytes being decoded at
// once by all workers are bounded, so memory does not grow with the number of CPUs. A file
// over a limit is reported as unreadable with the limit; ctx is checked between files.
//
// Caveats: counts are per technique ID as the rule names it. A rule naming both T1021 and
// T1021.002 counts once for each; a rule naming only T1021 is not counted for T1021.002 (it
// is listed as a parent rule instead). Rules naming a revoked or deprecated ID are counted for
// the replacement from the ruleset's revocation table and listed with the old ID. Files that
// are not rules (READMEs, field lists) are skipped and listed; files that look like rules but
// cannot be parsed are reported with the reason, and the rest still count.
package coverage
