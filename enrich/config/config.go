// Package config reads and validates enricher's YAML configuration.
//
// Decoding is strict: an unknown key is an error naming it. Validate returns errors that
// name the field path and the bad value. Secrets may come from the environment
// (ELASTICSEARCH_URL, ELASTICSEARCH_API_KEY, ELASTICSEARCH_USERNAME, ELASTICSEARCH_PASSWORD)
// so they need not be written in the file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/enricher-dev/enricher/enrich"
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid config")

// ValidationError names the field and value that failed validation.
type ValidationError struct {
	Field string
	Value any
	Err   error
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s: %v (got %q)", e.Field, e.Err, fmt.Sprint(e.Value))
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
	// Indices are index patterns to poll; default .alerts-security.alerts-*.
	Indices []string `yaml:"indices"`
	// Fields where ATT&CK IDs are found; default enrich.DefaultFields.
	Fields []enrich.Field `yaml:"fields"`
	// ExtraFields are added to Fields (handy to keep the defaults).
	ExtraFields []enrich.Field `yaml:"extra_fields"`
	// Query is an optional Elasticsearch query (JSON object) that further limits alerts.
	Query map[string]any `yaml:"query"`
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
}

// Default returns the configuration used when a file does not set a field.
func Default() Config {
	t := true
	return Config{
		Elasticsearch: Elasticsearch{RequestTimeout: 30 * time.Second},
		Alerts:        Alerts{Indices: []string{".alerts-security.alerts-*"}},
		Rules:         Rules{InheritParent: &t},
		Output:        Output{Root: "attack_mappings", InstallMappings: &t},
		Daemon: Daemon{
			Listen:          "127.0.0.1:9464",
			PollInterval:    10 * time.Second,
			BatchSize:       1000,
			MaxRetries:      5,
			BackoffInitial:  500 * time.Millisecond,
			BackoffMax:      30 * time.Second,
			ShutdownTimeout: 30 * time.Second,
		},
	}
}

// Load reads a config file (strict), applies the environment and defaults, and validates.
// An empty path means defaults plus environment.
func Load(path string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := decode(data, &cfg); err != nil {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
	}
	cfg.ApplyEnv(os.Getenv)
	cfg.fillDefaults()
	if err := cfg.Validate(); err != nil {
		if path != "" {
			return cfg, fmt.Errorf("%s: %w", path, err)
		}
		return cfg, err
	}
	return cfg, nil
}

func decode(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.ReplaceAll(strings.TrimPrefix(msg, "unmarshal errors:\n  "), "\n  ", "; ")
		return fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	return nil
}

// ApplyEnv fills connection settings from the environment where the file left them empty.
func (c *Config) ApplyEnv(getenv func(string) string) {
	es := &c.Elasticsearch
	if len(es.URLs) == 0 {
		if v := getenv("ELASTICSEARCH_URL"); v != "" {
			for _, u := range strings.Split(v, ",") {
				if u = strings.TrimSpace(u); u != "" {
					es.URLs = append(es.URLs, u)
				}
			}
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
}

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
	for i := range c.Plugins {
		if c.Plugins[i].Timeout == 0 {
			c.Plugins[i].Timeout = 10 * time.Second
		}
	}
}

// reservedFields are top-level fields of alerts (ECS field sets, Kibana, Wazuh): a plugin's
// namespace, which is its name, must not be one of them, or its patches would write over
// alert data such as kibana.alert.workflow_status.
var reservedFields = fieldSet(`agent as client cloud code_signature container data_stream destination device dll
	dns ecs elf email error event faas file geo group hash host http interface labels log macho message
	network observer orchestrator organization os package pe process registry related risk rule server
	service source span tags threat tls trace transaction url user user_agent vlan vulnerability x509
	kibana signal data decoder full_log input location manager predecoder previous_output syscheck
	timestamp id index type`)

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
)

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
		if _, err := os.Stat(f); err != nil {
			return bad("elasticsearch.ca_file", f, "cannot be read")
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
	for i, f := range c.Alerts.Fields {
		if !reField.MatchString(f.Path) {
			return bad(fmt.Sprintf("alerts.fields[%d].path", i), f.Path, "not a field path")
		}
		if f.Kind != enrich.FieldID && f.Kind != enrich.FieldTag {
			return bad(fmt.Sprintf("alerts.fields[%d].kind", i), f.Kind, "must be id or tag")
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
	if !reField.MatchString(c.Output.Root) || strings.Contains(c.Output.Root, ".") {
		return bad("output.root", c.Output.Root, "must be one field name without dots")
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
	case d.Listen == "":
		return bad("daemon.listen", d.Listen, "must be host:port")
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
	}
	return nil
}
