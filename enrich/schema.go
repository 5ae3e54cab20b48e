package enrich

import "sort"

// FormatVersion is the version of the object enricher writes under its root. It is part
// of every generation's fingerprint: an enricher that writes a different shape is a new
// generation, and alerts written in the old shape are enriched again by the backfill.
const FormatVersion = 5

// DefaultRoot is the default top-level field enricher writes.
const DefaultRoot = "attack_mappings"

// Paths under the root (relative to it) that the runner reads to decide whether an
// alert is done. Everything else under the root is written by the ATT&CK stage.
const (
	FieldStatus               = "status"
	FieldRulesetVersion       = "ruleset.version"
	FieldRulesetHash          = "ruleset.hash"
	FieldGeneration           = "ruleset.generation"
	PendingField              = "pending_stages"
	FieldQuarantine           = "quarantine"
	FieldQuarantineGeneration = "quarantine.generation"
	FieldEnrichedAt           = "enriched_at"
	// FieldDetails holds the alert's references to the mapping detail index (DetailRef).
	FieldDetails = "details"
)

// StatusQuarantined is written to <root>.status of a quarantined alert.
const StatusQuarantined = "quarantined"

// Field types of the schema, in Elasticsearch's vocabulary (OpenSearch shares it).
const (
	TypeKeyword   = "keyword"
	TypeBoolean   = "boolean"
	TypeDate      = "date"
	TypeLong      = "long"
	TypeText      = "text"
	TypeNoIndex   = "keyword_noindex" // stored and shown, not searchable
	TypeObject    = "object"          // an object; its fields follow
	TypeObjectArr = "object[]"        // an array of objects; its fields follow
)

// SchemaField is one field enricher writes under its root.
type SchemaField struct {
	Path string // relative to the root, dotted
	Type string
	Doc  string // one line, for the README's field table
}

// provenance are the fields every control, detection and related mapping carries in the
// full shape (output.detail: full); in the compact shape they are in the mapping detail
// index.
var provenance = []SchemaField{
	{"technique", TypeKeyword, "technique the mapping is for"},
	{"inherited", TypeBoolean, "mapped through the parent technique"},
	{"framework", TypeKeyword, "framework, e.g. nist_800_53"},
	{"framework_version", TypeKeyword, "framework release, e.g. rev5"},
	{"attack_version", TypeKeyword, "ATT&CK version of the mapping file"},
	{"mapping_version", TypeKeyword, "version of the mapping file"},
	{"mapping_type", TypeKeyword, "canonical mapping type, e.g. mitigates"},
	{"source_mapping_type", TypeKeyword, "mapping type as published, e.g. protects"},
	{"source_id", TypeKeyword, "capability ID as published, e.g. AC-02"},
	{"also_in", TypeKeyword, "other loaded releases that publish the same mapping"},
}

func under(prefix string, fs []SchemaField) []SchemaField {
	out := make([]SchemaField, len(fs))
	for i, f := range fs {
		out[i] = SchemaField{Path: prefix + "." + f.Path, Type: f.Type, Doc: f.Doc}
	}
	return out
}

// Schema is every field enricher writes under its root: the one definition from which
// the Elasticsearch mapping (enrich/elastic) and the field names used in code are made,
// and against which the README's field table is checked (TestREADMEFieldTableMatchesSchema).
var Schema = func() []SchemaField {
	fs := []SchemaField{
		{FieldStatus, TypeKeyword, "`enriched` (a technique has mappings), `unmapped` (techniques found, none mapped), `no_technique` (only malformed values), `quarantined`"},
		{"techniques", TypeKeyword, "technique IDs on the alert, normalized, revoked IDs replaced, sorted"},
		{"unmapped_techniques", TypeKeyword, "those with no mapping in the ruleset"},
		{"inherited_from", TypeKeyword, "parent techniques whose mappings were added (`rules.inherit_parent`)"},
		{"revoked", TypeObjectArr, "revoked IDs found on the alert"},
		{"revoked.id", TypeKeyword, "the revoked ID"},
		{"revoked.replaced_by", TypeKeyword, "its replacements"},
		{"revoked.deprecated", TypeBoolean, "deprecated rather than revoked"},
		{"controls", TypeObjectArr, "security controls"},
		{"controls.id", TypeKeyword, "canonical control ID, e.g. AC-2 (compact: the group's IDs)"},
		{"controls.name", TypeKeyword, "control name (compact: the group's names, in the order of its IDs)"},
		{"controls.group", TypeKeyword, "control family or group (full)"},
		{"controls.releases", TypeKeyword, "framework releases that publish the group's controls, e.g. `nist_800_53 rev5` (compact)"},
	}
	fs = append(fs, under("controls", provenance)...)
	fs = append(fs,
		SchemaField{"detections", TypeObjectArr, "product capabilities that detect, protect or respond"},
		SchemaField{"detections.product", TypeKeyword, "product, e.g. Microsoft Defender for Identity"},
		SchemaField{"detections.capability_id", TypeKeyword, "canonical capability ID, e.g. microsoft_sentinel (full)"},
		SchemaField{"detections.score_category", TypeKeyword, "protect, detect or respond"},
		SchemaField{"detections.score_value", TypeKeyword, "minimal, partial or significant"},
		SchemaField{"detections.comments", TypeText, "the mapping's comments (full)"},
		SchemaField{"detections.references", TypeNoIndex, "reference URLs (full)"},
		SchemaField{"detections.alerts", TypeObjectArr, "product alerts named by the mapping"},
		SchemaField{"detections.alerts.id", TypeKeyword, "alert ID, e.g. 2019"},
		SchemaField{"detections.alerts.name", TypeKeyword, "alert name"},
		SchemaField{"detections.queries", TypeKeyword, "hunting queries named by the mapping"},
		SchemaField{"detections.events", TypeObjectArr, "Windows events named by the mapping"},
		SchemaField{"detections.events.id", TypeKeyword, "event ID, e.g. 4624"},
		SchemaField{"detections.events.logon_type", TypeKeyword, "logon type, e.g. 3"},
	)
	fs = append(fs, under("detections", provenance)...)
	fs = append(fs, SchemaField{"related", TypeObjectArr, "other mappings (VERIS, CISA KEV, unknown mapping types): counted (compact), shaped like controls (full)"},
		SchemaField{"related.id", TypeKeyword, "capability ID (full)"},
		SchemaField{"related.count", TypeLong, "how many distinct capabilities the group holds; their IDs and names are in the mapping detail index (compact)"},
		SchemaField{"related.name", TypeKeyword, "capability name (full shape; compact: in the mapping detail index)"},
		SchemaField{"related.group", TypeKeyword, "capability group (full)"},
		SchemaField{"related.releases", TypeKeyword, "framework releases that publish them (compact)"})
	fs = append(fs, under("related", provenance)...)
	fs = append(fs,
		SchemaField{"frameworks", TypeKeyword, "framework releases that contributed, e.g. `nist_800_53 rev5`"},
		SchemaField{"has_detection", TypeBoolean, "a detect-scored product detection is mapped"},
		SchemaField{FieldDetails, TypeKeyword, "references to the mapping details (comments, references, provenance) of each mapped technique: `T1021.002@<ruleset hash>`, the `ref` of documents in the mapping detail index"},
		SchemaField{"compliance_check", TypeObject, "on alerts that carry their rule's own NIST tags (Wazuh's `rule.nist_800_53`): how they compare with CTID's NIST mappings"},
		SchemaField{"compliance_check.field", TypeKeyword, "the alert field compared: `rule.nist_800_53`"},
		SchemaField{"compliance_check.framework", TypeKeyword, "`nist_800_53`"},
		SchemaField{"compliance_check.both", TypeKeyword, "controls tagged by the rule and mapped by CTID"},
		SchemaField{"compliance_check.only_alert", TypeKeyword, "controls the rule tags and CTID does not map to the alert's techniques"},
		SchemaField{"compliance_check.only_ctid", TypeKeyword, "NIST controls CTID maps and the rule does not tag"},
		SchemaField{"compliance_check.differs", TypeBoolean, "the two sets differ"},
		SchemaField{"problems", TypeObjectArr, "values skipped in technique fields"},
		SchemaField{"problems.field", TypeKeyword, "the field"},
		SchemaField{"problems.value", TypeKeyword, "the value (shortened)"},
		SchemaField{"problems.reason", TypeKeyword, "`wrong_type` or `not_technique_id`"},
		SchemaField{PendingField, TypeKeyword, "optional plugin stages that failed and will be retried"},
		SchemaField{"ruleset", TypeObject, "the generation that wrote this"},
		SchemaField{FieldRulesetVersion, TypeKeyword, "version of the rules"},
		SchemaField{FieldRulesetHash, TypeKeyword, "fingerprint of everything that shapes the written object: rules, options, technique fields, stages, format version"},
		SchemaField{FieldGeneration, TypeLong, "order of that fingerprint among all generations registered in the store"},
		SchemaField{FieldQuarantine, TypeObject, "set when the alert failed too often; cleared by `enricher requeue` or a new generation"},
		SchemaField{FieldQuarantineGeneration, TypeLong, "generation that quarantined it"},
		SchemaField{"quarantine.hash", TypeKeyword, "fingerprint of that generation"},
		SchemaField{"quarantine.reason", TypeKeyword, "last failure, e.g. `bulk 400 mapper_parsing_exception` or `plugin asset crashed`"},
		SchemaField{"quarantine.attempts", TypeLong, "failed attempts"},
		SchemaField{"quarantine.at", TypeDate, "when it was quarantined"},
		SchemaField{FieldEnrichedAt, TypeDate, "when enricher wrote this"},
	)
	return fs
}()

// SchemaPaths returns the dotted paths of every leaf (non-object) field of the schema,
// sorted.
func SchemaPaths() []string {
	var out []string
	for _, f := range Schema {
		if f.Type != TypeObject && f.Type != TypeObjectArr {
			out = append(out, f.Path)
		}
	}
	sort.Strings(out)
	return out
}

// Under joins a root and a path relative to it.
func Under(root, path string) string {
	if path == "" {
		return root
	}
	return root + "." + path
}

// StatePaths are the paths under the root that the runner reads from every alert.
var StatePaths = []string{FieldStatus, "ruleset", PendingField, FieldQuarantine}
