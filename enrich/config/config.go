// Package config reads and validates enricher's YAML configuration.
//
// Decoding is strict: an unknown key is an error naming it. Validate returns errors that
// name the field path and the bad value. Secrets may come from the environment
// (ELASTICSEARCH_URL, ELASTICSEARCH_API_KEY, ELASTICSEARCH_USERNAME, ELASTICSEARCH_PASSWORD)
// so they need not be written in the file.
package config

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/enricher-dev/enricher/enrich"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid config")

// ValidationError names the field and value that failed validation, and where the value
// came from: a line of the file, or an environment variable.
type ValidationError struct {
	Field string
	Value any
	Err   error
	// Line is the line of the config file holding the value; 0 when not known.
	Line int
	// Env is the environment variable the value came from, if it did (then Load does not
	// name the config file).
	Env string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Env != "" {
		fmt.Fprintf(&b, "environment %s: ", e.Env)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "%s: ", e.Field)
	}
	fmt.Fprintf(&b, "%v", e.Err)
	if e.Value != nil {
		fmt.Fprintf(&b, " (got %q)", fmt.Sprint(e.Value))
	}
	return b.String()
}

// Unwrap lets errors.Is match ErrInvalid.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Config is the whole configuration file.
type Config struct {
	Elasticsearch Elasticsearch `yaml:"elasticsearch"`
	Alerts        Alerts        `yaml:"alerts"`
	Rules         Rules         `yaml:"rules"`
	Output        Output        `yaml:"output"`
	Plugins       []Plugin      `yaml:"plugins"`
	Daemon        Daemon        `yaml:"daemon"`
}

// Elasticsearch says how to reach the cluster.
type Elasticsearch struct {
	// URLs of the cluster; default from ELASTICSEARCH_URL (comma-separated) or http://127.0.0.1:9200.
	URLs     []string `yaml:"urls"`
	APIKey   string   `yaml:"api_key"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	// CAFile is a PEM file of CA certificates to trust.
	CAFile string `yaml:"ca_file"`
	// RequestTimeout bounds each request.
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// Alerts says where alerts are and where technique IDs are on them.
type Alerts struct {
	// Indices are index patterns to poll; default DefaultIndices.
	Indices []string `yaml:"indices"`
	// Fields where ATT&CK IDs are found; default enrich.DefaultFields.
	Fields []enrich.Field `yaml:"fields"`
	// ExtraFields are added to Fields (handy to keep the defaults).
	ExtraFields []enrich.Field `yaml:"extra_fields"`
	// Query is an optional Elasticsearch query (JSON object) that further limits alerts.
	Query map[string]any `yaml:"query"`
	// TimeField orders alerts (newest first) and splits the live window from the
	// history. Default @timestamp.
	TimeField string `yaml:"time_field"`
}

// Rules says which mapping content to use.
type Rules struct {
	// Dir is a rules folder (the format `enricher rules import` writes). Empty: built-in content.
	Dir string `yaml:"dir"`
	// Sources are CTID Mappings Explorer files (paths or http(s) URLs) loaded at start.
	Sources []string `yaml:"sources"`
	// KeepAllReleases keeps every loaded release of a framework instead of only the newest.
	KeepAllReleases bool `yaml:"keep_all_releases"`
	// InheritParent adds a sub-technique's parent mappings, marked inherited. Default true.
	InheritParent *bool `yaml:"inherit_parent"`
}

// Output says how enrichment is written.
type Output struct {
	// Root is the top-level object that holds everything enricher writes. Default attack_mappings.
	Root string `yaml:"root"`
	// InstallMappings puts enricher's field mappings on alert indices and an index template. Default true.
	InstallMappings *bool `yaml:"install_mappings"`
	// Detail is the shape of the mappings on an alert: compact (default; comments,
	// references and provenance in the mapping detail index) or full (every mapping whole).
	Detail string `yaml:"detail"`
	// DetailsIndex is the mapping detail index. Default enricher-mapping-details.
	DetailsIndex string `yaml:"details_index"`
}

// Plugin is one external enrichment stage.
type Plugin struct {
	Name string `yaml:"name"`
	// Path of the plugin binary.
	Path string `yaml:"path"`
	// Args passed to the plugin binary.
	Args []string `yaml:"args"`
	// SHA256 of the binary, hex; required.
	SHA256 string `yaml:"sha256"`
	// Timeout of one batch call. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// Required plugins must succeed before anything is written for an alert.
	Required bool `yaml:"required"`
	// Config is passed to the plugin as JSON at start.
	Config map[string]any `yaml:"config"`
}

// Daemon tunes the polling loop and the HTTP listener.
type Daemon struct {
	// Listen is the address of /metrics, /healthz, /readyz. Default 127.0.0.1:9464.
	Listen string `yaml:"listen"`
	// PollInterval between polls when nothing is pending. Default 10s.
	PollInterval time.Duration `yaml:"poll_interval"`
	// BatchSize is the page size of searches and bulk requests. Default 1000.
	BatchSize int `yaml:"batch_size"`
	// MaxRetries of one bulk item on 409/429/5xx before it is counted failed. Default 5.
	MaxRetries int `yaml:"max_retries"`
	// BackoffInitial and BackoffMax bound retry backoff. Defaults 500ms and 30s.
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
	// ShutdownTimeout bounds the final flush on SIGTERM. Default 30s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// LiveWindow: alerts whose time field lies within it are the live path's, polled
	// every PollInterval; older ones (and alerts without one) the backfill's. Default 1h.
	LiveWindow time.Duration `yaml:"live_window"`
	// SweepInterval: how often the backfill sweeps the history again once done, for
	// alerts indexed later than LiveWindow. Default 10m.
	SweepInterval time.Duration `yaml:"sweep_interval"`
	// BackfillRate bounds the backfill in alerts per second; 0: no bound. Default 500.
	BackfillRate float64 `yaml:"backfill_rate"`
	// MaxAttempts is an alert's attempt budget before it is quarantined. Default 3.
	MaxAttempts int `yaml:"max_attempts"`
	// MaxAlertBytes: larger alerts are quarantined. Default 10 MiB.
	MaxAlertBytes int `yaml:"max_alert_bytes"`
	// BulkMaxBytes bounds one _bulk request. Default 10 MiB.
	BulkMaxBytes int `yaml:"bulk_max_bytes"`
	// IndexRetry: how long an index left out (mapping conflict, read-only, forbidden)
	// waits before it is tried again. Default 5m.
	IndexRetry time.Duration `yaml:"index_retry"`
	// StateIndex is the hidden index of generations and checkpoints. Default .enricher-state.
	StateIndex string `yaml:"state_index"`
	// Instance names this replica in the roster, logs and metrics; replicas over the same
	// alerts share the work. Default (empty): <hostname>-<pid>, unique per process.
	// The environment variable ENRICHER_INSTANCE sets it when the file does not.
	Instance string `yaml:"instance"`
	// Lease is how long a replica's share stays its own without renewal (renewed every
	// Lease/3): a killed replica's share is taken over within Lease + Lease/3 +
	// PollInterval. Default 15s.
	Lease time.Duration `yaml:"lease"`
}

// DefaultIndices are where the alerts enricher knows sit by default: Kibana's security
// alerts (hidden backing indices behind one alias per space), Wazuh 4.x alerts (daily
// indices of the Wazuh indexer) and Wazuh 5 findings (data streams). Patterns that match
// nothing cost nothing.
var DefaultIndices = []string{".alerts-security.alerts-*", "wazuh-alerts-4.x-*", "wazuh-findings-v5*"}

// Default returns the configuration used when a file does not set a field.
func Default() Config {
	t := true
	return Config{
		Elasticsearch: Elasticsearch{RequestTimeout: 30 * time.Second},
		Alerts:        Alerts{Indices: append([]string(nil), DefaultIndices...), TimeField: "@timestamp"},
		Rules:         Rules{InheritParent: &t},
		Output:        Output{Root: "attack_mappings", InstallMappings: &t, Detail: enrich.DetailCompact, DetailsIndex: DefaultDetailsIndex},
		Daemon: Daemon{
			Listen:          "127.0.0.1:9464",
			PollInterval:    10 * time.Second,
			BatchSize:       1000,
			MaxRetries:      5,
			BackoffInitial:  500 * time.Millisecond,
			BackoffMax:      30 * time.Second,
			ShutdownTimeout: 30 * time.Second,
			LiveWindow:      time.Hour,
			SweepInterval:   10 * time.Minute,
			BackfillRate:    500,
			MaxAttempts:     3,
			MaxAlertBytes:   10 << 20,
			BulkMaxBytes:    10 << 20,
			IndexRetry:      5 * time.Minute,
			StateIndex:      ".enricher-state",
			Lease:           15 * time.Second,
		},
	}
}

// DefaultDetailsIndex is the default mapping detail index: one document per mapping of
// the loaded rulesets, which alerts reference through <root>.details.
const DefaultDetailsIndex = "enricher-mapping-details"

// SplitURLs reads a comma-separated list of URLs, as ELASTICSEARCH_URL holds them.
func SplitURLs(v string) []string {
	var out []string
	for _, u := range strings.Split(v, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// Limits on the config file.
const (
	// MaxConfigBytes bounds the config file.
	MaxConfigBytes = 256 << 10
	// maxYAMLKeys bounds the keys of one map: the YAML decoder checks keys for duplicates
	// in quadratic time.
	maxYAMLKeys = 1000
	// maxYAMLValues bounds the values (aliases expanded) that decoding visits.
	maxYAMLValues = 100000
	// maxCAFileBytes bounds elasticsearch.ca_file.
	maxCAFileBytes = 1 << 20
)

// Load reads a config file (strict), applies the environment and defaults, and validates.
// An empty path means defaults plus environment. An error about a value from the file names
// the file (and the line, when decoding); one about a value from the environment names the
// variable instead.
func Load(path string) (Config, error) { return LoadWith(path, nil) }

// Flag is a command-line override: it names the flag and sets the value it gives.
type Flag struct {
	Name  string // e.g. "--rules"
	Field string // the field it sets, e.g. "rules.dir"
	Set   func(*Config)
}

// LoadWith is Load with command-line overrides applied after the file and the
// environment and before validation; an error about an overridden field names the flag.
func LoadWith(path string, flags []Flag) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := readFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := decode(data, &cfg); err != nil {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	before := cfg.Elasticsearch
	cfg.ApplyEnv(os.Getenv)
	env := envFields(before, cfg.Elasticsearch)
	fields := len(cfg.Alerts.Fields) // extra_fields follow these in Alerts.Fields
	if fields == 0 {
		fields = len(enrich.DefaultFields)
	}
	for _, f := range flags {
		f.Set(&cfg)
	}
	cfg.fillDefaults()
	if err := cfg.Validate(); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			for _, f := range flags {
				if ve.Field == f.Field || strings.HasPrefix(ve.Field, f.Field+"[") { // a list's element too
					return cfg, fmt.Errorf("%s: %w", f.Name, err)
				}
			}
			if m := reFieldsIndex.FindStringSubmatch(ve.Field); m != nil {
				if i, _ := strconv.Atoi(m[1]); i >= fields {
					ve.Field = fmt.Sprintf("alerts.extra_fields[%d]%s", i-fields, m[2])
				}
			}
			for field, name := range env {
				if ve.Field == field || strings.HasPrefix(ve.Field, field+"[") {
					ve.Env = name
					return cfg, err
				}
			}
		}
		if path != "" {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
		return cfg, err
	}
	return cfg, nil
}

var reFieldsIndex = regexp.MustCompile(`^alerts\.fields\[(\d+)\](.*)$`)

// envFields returns the fields ApplyEnv set, and from which variable.
func envFields(before, after Elasticsearch) map[string]string {
	m := map[string]string{}
	if len(before.URLs) == 0 && len(after.URLs) > 0 {
		m["elasticsearch.urls"] = "ELASTICSEARCH_URL"
	}
	for _, f := range []struct{ field, env, before, after string }{
		{"elasticsearch.api_key", "ELASTICSEARCH_API_KEY", before.APIKey, after.APIKey},
		{"elasticsearch.username", "ELASTICSEARCH_USERNAME", before.Username, after.Username},
		{"elasticsearch.password", "ELASTICSEARCH_PASSWORD", before.Password, after.Password},
	} {
		if f.before == "" && f.after != "" {
			m[f.field] = f.env
		}
	}
	return m
}

// readFile reads the config file, refusing more than MaxConfigBytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s: is a folder, not a file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("%s: larger than the %d KiB limit of a config file", path, MaxConfigBytes>>10)
	}
	return data, nil
}

// decode decodes one YAML document into cfg. Before decoding, check walks the document
// against the Config types, so that a mistake is reported with its line, field path and
// value, in YAML's words rather than Go's: unknown fields, a number where a whole number or a
// duration is wanted (yaml would turn 1.5 into 1 and 10 into 10ns), a key that is not text in
// a map that becomes JSON, a second document.
func decode(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("%w: %s", ErrInvalid, yamlMessage(err))
	}
	var second yaml.Node
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		line := second.Line
		if err != nil {
			return fmt.Errorf("%w: %s", ErrInvalid, yamlMessage(err))
		}
		return &ValidationError{Line: line, Err: errors.New("a second YAML document; the config is one document (remove the ---)")}
	}
	c := &checker{}
	if err := c.check(&doc, reflect.TypeOf(cfg).Elem(), ""); err != nil {
		return err
	}
	if err := doc.Decode(cfg); err != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, yamlMessage(err))
	}
	return nil
}

// yamlMessage is a YAML decoder error in one line, without its "yaml: " prefix.
func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "\n  ", "; ")
}

// checker walks a YAML node tree against a Go type.
type checker struct {
	visited int
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	anyType      = reflect.TypeOf((*any)(nil)).Elem()
)

// yamlKind says in words what a node is.
func yamlKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "true/false"
	}
	return "text"
}

func (c *checker) check(n *yaml.Node, t reflect.Type, path string) error {
	if c.visited++; c.visited > maxYAMLValues {
		return &ValidationError{Line: n.Line, Err: fmt.Errorf("more than %d values (aliases included)", maxYAMLValues)}
	}
	bad := func(msg string, v any) error {
		return &ValidationError{Field: path, Line: n.Line, Value: v, Err: errors.New(msg)}
	}
	// want reports a node of the wrong kind: its value when it is a scalar, else its kind.
	want := func(what string) error {
		if n.Kind == yaml.ScalarNode {
			return bad("want "+what, n.Value)
		}
		return bad("want "+what+", got "+yamlKind(n), nil)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return c.check(n.Content[0], t, path)
	case yaml.AliasNode:
		return c.check(n.Alias, t, path)
	}
	if tag := n.ShortTag(); !strings.HasPrefix(tag, "!!") {
		return bad("YAML tags other than the standard !! ones are not allowed", tag)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // the zero value; Validate checks what must be set
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			return want("a duration with a unit, such as 10s or 1m30s")
		}
		if _, err := time.ParseDuration(n.Value); err != nil || n.ShortTag() != "!!str" {
			return bad("want a duration with a unit, such as 10s or 1m30s", n.Value)
		}
		return nil
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return want("a map")
		}
		fields := yamlFields(t)
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			at := join(path, k.Value)
			if line, ok := seen[k.Value]; ok {
				return &ValidationError{Field: at, Line: k.Line, Err: fmt.Errorf("given twice (also on line %d)", line)}
			}
			seen[k.Value] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				names := make([]string, 0, len(fields))
				for name := range fields {
					names = append(names, name)
				}
				sort.Strings(names)
				return &ValidationError{Field: at, Line: k.Line, Err: fmt.Errorf("unknown field (known: %s)", strings.Join(names, ", "))}
			}
			if err := c.check(v, ft, at); err != nil {
				return err
			}
		}
		return nil
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return want("a list")
		}
		for i, item := range n.Content {
			if err := c.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case t.Kind() == reflect.Map || t == anyType && n.Kind == yaml.MappingNode:
		if n.Kind != yaml.MappingNode {
			return want("a map")
		}
		if len(n.Content) > 2*maxYAMLKeys {
			return bad(fmt.Sprintf("more than %d keys", maxYAMLKeys), nil)
		}
		elem := anyType
		if t.Kind() == reflect.Map {
			elem = t.Elem()
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.AliasNode {
				k = k.Alias
			}
			if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
				return &ValidationError{Field: path, Line: k.Line, Value: scalarValue(k),
					Err: fmt.Errorf("key is %s, not text (keys become JSON object keys; quote it)", yamlKind(k))}
			}
			if err := c.check(v, elem, join(path, k.Value)); err != nil {
				return err
			}
		}
		return nil
	case t == anyType:
		if n.Kind == yaml.SequenceNode {
			for i, item := range n.Content {
				if err := c.check(item, anyType, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return want("a single value")
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.ShortTag() != "!!int" {
			return bad("want a whole number", n.Value)
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			return bad("out of range", n.Value)
		}
	case reflect.Bool:
		if n.ShortTag() != "!!bool" {
			return bad("want true or false", n.Value)
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// scalarValue is a node's value for a message, or nil for a list or map.
func scalarValue(n *yaml.Node) any {
	if n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return nil
}

// yamlFields maps the YAML keys of a struct type to the fields' types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

// ApplyEnv fills connection settings from the environment where the file left them empty.
func (c *Config) ApplyEnv(getenv func(string) string) {
	es := &c.Elasticsearch
	if len(es.URLs) == 0 {
		if v := getenv("ELASTICSEARCH_URL"); v != "" {
			es.URLs = SplitURLs(v)
		}
	}
	if es.APIKey == "" {
		es.APIKey = getenv("ELASTICSEARCH_API_KEY")
	}
	if es.Username == "" {
		es.Username = getenv("ELASTICSEARCH_USERNAME")
	}
	if es.Password == "" {
		es.Password = getenv("ELASTICSEARCH_PASSWORD")
	}
	if c.Daemon.Instance == "" {
		c.Daemon.Instance = getenv("ENRICHER_INSTANCE")
	}
}

// reInstance is what a replica name may be.
var reInstance = regexp.MustCompile(`^[A-Za-z0-9._:@-]{1,128}$`)

func (c *Config) fillDefaults() {
	d := Default()
	if len(c.Elasticsearch.URLs) == 0 {
		c.Elasticsearch.URLs = []string{"http://127.0.0.1:9200"}
	}
	if len(c.Alerts.Fields) == 0 {
		c.Alerts.Fields = append([]enrich.Field(nil), enrich.DefaultFields...)
	}
	c.Alerts.Fields = append(c.Alerts.Fields, c.Alerts.ExtraFields...)
	c.Alerts.ExtraFields = nil
	if c.Rules.InheritParent == nil {
		c.Rules.InheritParent = d.Rules.InheritParent
	}
	if c.Output.InstallMappings == nil {
		c.Output.InstallMappings = d.Output.InstallMappings
	}
	if c.Output.Detail == "" {
		c.Output.Detail = d.Output.Detail
	}
	if c.Output.DetailsIndex == "" {
		c.Output.DetailsIndex = d.Output.DetailsIndex
	}
	for i := range c.Plugins {
		if c.Plugins[i].Timeout == 0 {
			c.Plugins[i].Timeout = 10 * time.Second
		}
	}
}

// reservedFields are top-level fields of alerts (ECS field sets, Kibana, Wazuh): a plugin's
// namespace, which is its name, and output.root must not be one of them, or their patches
// would write over alert data such as kibana.alert.workflow_status.
var reservedFields = fieldSet(`@timestamp agent as client cloud code_signature container data_stream destination
	device dll dns ecs elf email entity error event faas file gen_ai geo group hash host http interface labels
	log macho message network observer orchestrator organization os package pe process registry related risk
	rule server service source span tags threat tls trace transaction url user user_agent vlan volume
	vulnerability x509 kibana signal data decoder full_log input location manager predecoder
	previous_output syscheck cluster timestamp id index type`)

func fieldSet(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Fields(s) {
		m[f] = true
	}
	return m
}

var (
	reName  = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	reSHA   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reField = regexp.MustCompile(`^[A-Za-z_@][A-Za-z0-9_@.\-]*$`)
	// reIndexName: lower case, no wildcard, may start with a dot (hidden).
	reIndexName = regexp.MustCompile(`^\.?[a-z0-9][a-z0-9_.\-]{0,200}$`)
)

// isFieldPath reports whether p is names joined by single dots.
func isFieldPath(p string) bool {
	return reField.MatchString(p) && !strings.Contains(p, "..") && !strings.HasSuffix(p, ".")
}

// isListenAddr reports whether a is host:port with a numeric port from 0 (any free port) to
// 65535 (the host may be empty: every interface).
func isListenAddr(a string) bool {
	host, port, err := net.SplitHostPort(a)
	if err != nil || strings.ContainsAny(host, " \t/") {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535 && port[0] != '+'
}

// checkCAFile returns what is wrong with a CA file, or "".
func checkCAFile(path string) string {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return "cannot be read"
	case st.IsDir():
		return "is a folder, not a PEM file"
	case !st.Mode().IsRegular():
		return "is not a regular file"
	case st.Size() > maxCAFileBytes:
		return fmt.Sprintf("larger than the %d KiB limit of a CA file", maxCAFileBytes>>10)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "cannot be read"
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		return "holds no PEM certificate"
	}
	return ""
}

// Validate checks every field; the error names the first bad field and its value.
func (c *Config) Validate() error {
	bad := func(field string, v any, msg string) error {
		return &ValidationError{Field: field, Value: v, Err: errors.New(msg)}
	}
	for i, u := range c.Elasticsearch.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return bad(fmt.Sprintf("elasticsearch.urls[%d]", i), u, "must be an http:// or https:// URL")
		}
	}
	if c.Elasticsearch.APIKey != "" && c.Elasticsearch.Username != "" {
		return bad("elasticsearch.api_key", "<redacted>", "set either api_key or username/password, not both")
	}
	if (c.Elasticsearch.Username == "") != (c.Elasticsearch.Password == "") {
		return bad("elasticsearch.username", c.Elasticsearch.Username, "username and password go together")
	}
	if f := c.Elasticsearch.CAFile; f != "" {
		if msg := checkCAFile(f); msg != "" {
			return bad("elasticsearch.ca_file", f, msg)
		}
	}
	if c.Elasticsearch.RequestTimeout <= 0 {
		return bad("elasticsearch.request_timeout", c.Elasticsearch.RequestTimeout, "must be > 0")
	}
	if len(c.Alerts.Indices) == 0 {
		return bad("alerts.indices", "[]", "must list at least one index pattern")
	}
	for i, ix := range c.Alerts.Indices {
		if strings.TrimSpace(ix) == "" || strings.ContainsAny(ix, " \"\\/,|>?<") {
			return bad(fmt.Sprintf("alerts.indices[%d]", i), ix, "not a valid index pattern")
		}
	}
	if !reField.MatchString(c.Output.Root) || strings.Contains(c.Output.Root, ".") {
		return bad("output.root", c.Output.Root, "must be one field name without dots")
	}
	if reservedFields[c.Output.Root] || strings.HasPrefix(c.Output.Root, "_") {
		return bad("output.root", c.Output.Root, "is a top-level alert field (ECS, Kibana or Wazuh) or an Elasticsearch metadata field; enricher writes only its own new field")
	}
	if c.Output.Detail != enrich.DetailCompact && c.Output.Detail != enrich.DetailFull {
		return bad("output.detail", c.Output.Detail, "must be compact or full")
	}
	if !reIndexName.MatchString(c.Output.DetailsIndex) {
		return bad("output.details_index", c.Output.DetailsIndex, "must be a lower-case index name")
	}
	if c.Output.DetailsIndex == c.Daemon.StateIndex {
		return bad("output.details_index", c.Output.DetailsIndex, "is daemon.state_index; the two need their own indices")
	}
	for i, ix := range c.Alerts.Indices {
		if ok, _ := path.Match(ix, c.Output.DetailsIndex); ok || ix == c.Output.DetailsIndex {
			return bad("output.details_index", c.Output.DetailsIndex, fmt.Sprintf("matches alerts.indices[%d] (%s); mapping details are not alerts", i, ix))
		}
	}
	for i, f := range c.Alerts.Fields {
		if !isFieldPath(f.Path) {
			return bad(fmt.Sprintf("alerts.fields[%d].path", i), f.Path, "not a field path (names joined by single dots)")
		}
		if f.Path == c.Output.Root || strings.HasPrefix(f.Path, c.Output.Root+".") {
			return bad(fmt.Sprintf("alerts.fields[%d].path", i), f.Path, "is inside output.root ("+c.Output.Root+"), which enricher writes")
		}
		if f.Kind != enrich.FieldID && f.Kind != enrich.FieldTag {
			return bad(fmt.Sprintf("alerts.fields[%d].kind", i), f.Kind, "must be id or tag")
		}
	}
	if d := c.Rules.Dir; d != "" {
		if st, err := os.Stat(d); err != nil {
			return bad("rules.dir", d, "no such folder")
		} else if !st.IsDir() {
			return bad("rules.dir", d, "not a folder")
		}
	}
	for i, s := range c.Rules.Sources {
		if strings.TrimSpace(s) == "" {
			return bad(fmt.Sprintf("rules.sources[%d]", i), s, "must be a path or an http(s) URL")
		}
		if strings.Contains(s, "://") && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
			return bad(fmt.Sprintf("rules.sources[%d]", i), s, "URL scheme must be http or https")
		}
	}
	names := map[string]bool{c.Output.Root: true}
	for i, p := range c.Plugins {
		at := fmt.Sprintf("plugins[%d]", i)
		switch {
		case !reName.MatchString(p.Name):
			return bad(at+".name", p.Name, "must match [a-z][a-z0-9_]*")
		case p.Name == c.Output.Root:
			return bad(at+".name", p.Name, "is output.root, enricher's own field")
		case reservedFields[p.Name]:
			return bad(at+".name", p.Name, "is a top-level alert field (ECS or Kibana); a plugin writes only its own new field")
		case names[p.Name]:
			return bad(at+".name", p.Name, "used twice")
		case p.Path == "":
			return bad(at+".path", p.Path, "must be set")
		case !reSHA.MatchString(p.SHA256):
			return bad(at+".sha256", p.SHA256, "must be the binary's SHA-256, 64 lower-case hex digits")
		case p.Timeout < 0:
			return bad(at+".timeout", p.Timeout, "must be > 0")
		}
		names[p.Name] = true
	}
	d := c.Daemon
	switch {
	case !isListenAddr(d.Listen):
		return bad("daemon.listen", d.Listen, "must be host:port with a port from 0 (any free port) to 65535")
	case d.PollInterval <= 0:
		return bad("daemon.poll_interval", d.PollInterval, "must be > 0")
	case d.BatchSize < 1 || d.BatchSize > 10000:
		return bad("daemon.batch_size", d.BatchSize, "must be between 1 and 10000")
	case d.MaxRetries < 0:
		return bad("daemon.max_retries", d.MaxRetries, "must be >= 0")
	case d.BackoffInitial <= 0:
		return bad("daemon.backoff_initial", d.BackoffInitial, "must be > 0")
	case d.BackoffMax < d.BackoffInitial:
		return bad("daemon.backoff_max", d.BackoffMax, "must be >= daemon.backoff_initial")
	case d.ShutdownTimeout <= 0:
		return bad("daemon.shutdown_timeout", d.ShutdownTimeout, "must be > 0")
	case d.LiveWindow < d.PollInterval:
		return bad("daemon.live_window", d.LiveWindow, "must be >= daemon.poll_interval")
	case d.SweepInterval < time.Minute:
		return bad("daemon.sweep_interval", d.SweepInterval, "must be >= 1m")
	case d.BackfillRate < 0 || d.BackfillRate != d.BackfillRate:
		return bad("daemon.backfill_rate", d.BackfillRate, "must be >= 0 (alerts per second; 0: no bound)")
	case d.MaxAttempts < 1 || d.MaxAttempts > 100:
		return bad("daemon.max_attempts", d.MaxAttempts, "must be between 1 and 100")
	case d.MaxAlertBytes < 1024:
		return bad("daemon.max_alert_bytes", d.MaxAlertBytes, "must be >= 1024")
	case d.BulkMaxBytes < 1024:
		return bad("daemon.bulk_max_bytes", d.BulkMaxBytes, "must be >= 1024")
	case d.IndexRetry < time.Second:
		return bad("daemon.index_retry", d.IndexRetry, "must be >= 1s")
	case !reIndexName.MatchString(d.StateIndex):
		return bad("daemon.state_index", d.StateIndex, "must be a lower-case index name")
	case d.Instance != "" && !reInstance.MatchString(d.Instance):
		return bad("daemon.instance", d.Instance, "must be 1 to 128 letters, digits or . _ - : @")
	case d.Lease < 3*time.Second || d.Lease > 10*time.Minute:
		return bad("daemon.lease", d.Lease, "must be between 3s and 10m")
	}
	if !reField.MatchString(c.Alerts.TimeField) {
		return bad("alerts.time_field", c.Alerts.TimeField, "not a field path")
	}
	return nil
}
