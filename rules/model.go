package rules

// File is one mapping file in the rules format: the mappings of one framework release.
// It is what `enricher rules import` writes and what a detection engineer edits.
type File struct {
	Source   Source        `yaml:"source" json:"source"`
	Mappings []FileMapping `yaml:"mappings" json:"mappings"`
}

// Source describes the framework release a set of mappings came from.
type Source struct {
	// Framework is the CTID mapping_framework, e.g. "nist_800_53", "azure", "m365".
	Framework string `yaml:"framework" json:"framework"`
	// FrameworkVersion is the CTID mapping_framework_version: a revision ("rev5"), a
	// version ("1.4.0") or a release date ("04/26/2025").
	FrameworkVersion string `yaml:"framework_version" json:"framework_version"`
	// AttackVersion is the ATT&CK release the mappings were made against, e.g. "16.1".
	AttackVersion  string `yaml:"attack_version" json:"attack_version"`
	MappingVersion string `yaml:"mapping_version,omitempty" json:"mapping_version,omitempty"`
	Domain         string `yaml:"domain,omitempty" json:"domain,omitempty"`
	CreationDate   string `yaml:"creation_date,omitempty" json:"creation_date,omitempty"`
	LastUpdate     string `yaml:"last_update,omitempty" json:"last_update,omitempty"`
	// Origin says where the file came from (a path, a URL, or a page).
	Origin string `yaml:"origin,omitempty" json:"origin,omitempty"`
	// Rows is the number of rows the published file held (mapping_objects), skipped ones included.
	Rows int `yaml:"rows,omitempty" json:"rows,omitempty"`
	// Skipped counts the rows of the published file that were left out, by reason
	// (see SkipNullMappingType and the other Skip* constants). `enricher rules import`
	// records them here so that `enricher rules check` reports them from the YAML too.
	Skipped map[string]int `yaml:"skipped,omitempty" json:"skipped,omitempty"`
	// Path is the file the source was loaded from; set by the loader.
	Path string `yaml:"-" json:"path,omitempty"`
}

// FileMapping is one row of a mapping file, with values as the source published them.
type FileMapping struct {
	Technique       string         `yaml:"technique" json:"technique"`
	TechniqueName   string         `yaml:"technique_name,omitempty" json:"technique_name,omitempty"`
	CapabilityID    string         `yaml:"capability_id" json:"capability_id"`
	Capability      string         `yaml:"capability,omitempty" json:"capability,omitempty"`
	CapabilityGroup string         `yaml:"capability_group,omitempty" json:"capability_group,omitempty"`
	MappingType     string         `yaml:"mapping_type" json:"mapping_type"`
	ScoreCategory   string         `yaml:"score_category,omitempty" json:"score_category,omitempty"`
	ScoreValue      string         `yaml:"score_value,omitempty" json:"score_value,omitempty"`
	RelatedScore    string         `yaml:"related_score,omitempty" json:"related_score,omitempty"`
	Comments        string         `yaml:"comments,omitempty" json:"comments,omitempty"`
	References      []string       `yaml:"references,omitempty" json:"references,omitempty"`
	Alerts          []ProductAlert `yaml:"alerts,omitempty" json:"alerts,omitempty"`
	Queries         []string       `yaml:"queries,omitempty" json:"queries,omitempty"`
	Events          []WindowsEvent `yaml:"events,omitempty" json:"events,omitempty"`
	// Row is the 1-based row in the published file (mapping_objects index for CTID JSON),
	// set by the loader for reports; 0 means the row's index in Mappings.
	Row int `yaml:"-" json:"-"`
}

// Reasons a published row is skipped, as counted in Source.Skipped and Report.Skipped.
const (
	SkipNullMappingType = "null mapping_type"
	SkipNonMappable     = "non_mappable"
	SkipNoCapability    = "no capability_id"
	SkipNoTechnique     = "no attack_object_id"
)

// Kind says how a mapping is shown on an alert.
type Kind string

// The kinds of mapping. See tables/mapping_types.yaml.
const (
	KindControl   Kind = "control"
	KindDetection Kind = "detection"
	KindRelated   Kind = "related"
)

// ProductAlert is a product alert or rule named by a mapping, e.g. Defender for Identity
// external ID 2019 "Remote code execution attempt".
type ProductAlert struct {
	ID   string `yaml:"id" json:"id"`
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
}

// WindowsEvent is a Windows security event named by a mapping, e.g. 4624 with logon type 3.
type WindowsEvent struct {
	ID        string `yaml:"id" json:"id"`
	LogonType string `yaml:"logon_type,omitempty" json:"logon_type,omitempty"`
}

// Mapping is one normalized mapping between a capability and an ATT&CK technique.
type Mapping struct {
	Technique string `json:"technique"`
	// SourceTechnique is the technique ID as published when it was revoked or deprecated
	// and the mapping was moved to its replacement (see tables/revoked.yaml).
	SourceTechnique string `json:"source_technique,omitempty"`
	TechniqueName   string `json:"technique_name,omitempty"`
	// CapabilityID is canonical: NIST IDs unpadded (AC-2), renamed products under their
	// current name (microsoft_sentinel).
	CapabilityID string `json:"capability_id"`
	// SourceCapabilityID is the ID as published, when it differs from CapabilityID.
	SourceCapabilityID string `json:"source_capability_id,omitempty"`
	// Capability is the control name or product name.
	Capability      string `json:"capability"`
	CapabilityGroup string `json:"capability_group,omitempty"`
	Kind            Kind   `json:"kind"`
	// MappingType is canonical (mitigates, technique_scores, related_to, ...).
	MappingType string `json:"mapping_type"`
	// SourceMappingType is the mapping type as published, when it differs.
	SourceMappingType string         `json:"source_mapping_type,omitempty"`
	ScoreCategory     string         `json:"score_category,omitempty"`
	ScoreValue        string         `json:"score_value,omitempty"`
	RelatedScore      string         `json:"related_score,omitempty"`
	Comments          string         `json:"comments,omitempty"`
	References        []string       `json:"references,omitempty"`
	Alerts            []ProductAlert `json:"alerts,omitempty"`
	Queries           []string       `json:"queries,omitempty"`
	Events            []WindowsEvent `json:"events,omitempty"`
	// Source is the framework release the mapping came from; shared by all its mappings.
	Source *Source `json:"source"`
	// AlsoIn lists other loaded releases that publish the same mapping (same technique and
	// canonical capability), e.g. Defender for Identity in both the Azure 2021 and M365 2025 files.
	AlsoIn []*Source `json:"also_in,omitempty"`
}

// Revocation is one revoked or deprecated ATT&CK technique ID and its replacements.
type Revocation struct {
	ID         string   `yaml:"id" json:"id"`
	ReplacedBy []string `yaml:"replaced_by" json:"replaced_by"`
	Name       string   `yaml:"name,omitempty" json:"name,omitempty"`
	Deprecated bool     `yaml:"deprecated,omitempty" json:"deprecated,omitempty"`
}

// Alias maps a published capability ID to its canonical ID and product name.
type Alias struct {
	From      string `yaml:"from"`
	Framework string `yaml:"framework,omitempty"`
	To        string `yaml:"to"`
	Name      string `yaml:"name"`
}

// MappingTypeDef is one canonical mapping type and the spellings that mean it.
type MappingTypeDef struct {
	Type      string   `yaml:"type"`
	Kind      Kind     `yaml:"kind"`
	Spellings []string `yaml:"spellings"`
}
