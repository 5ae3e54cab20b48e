package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadBadConfigs(t *testing.T) {
	t.Setenv("ELASTICSEARCH_URL", "")
	for _, tc := range []struct{ file, want string }{
		{"invalid-url-scheme.yml", `testdata/invalid-url-scheme.yml: elasticsearch.urls[0]: must be an http:// or https:// URL (got "ftp://es:9200")`},
		{"invalid-unknown-key.yml", `testdata/invalid-unknown-key.yml: invalid config: line 2: field url not found in type config.Elasticsearch`},
		{"invalid-batch-size.yml", `testdata/invalid-batch-size.yml: daemon.batch_size: must be between 1 and 10000 (got "0")`},
		{"invalid-duration.yml", `testdata/invalid-duration.yml: invalid config: line 2: cannot unmarshal !!str ` + "`soon`" + ` into time.Duration`},
		{"invalid-root.yml", `testdata/invalid-root.yml: output.root: must be one field name without dots (got "attack.mappings")`},
		{"invalid-field-kind.yml", `testdata/invalid-field-kind.yml: alerts.fields[0].kind: must be id or tag (got "number")`},
		{"invalid-plugin-sha.yml", `testdata/invalid-plugin-sha.yml: plugins[0].sha256: must be the binary's SHA-256, 64 lower-case hex digits (got "abc")`},
		{"invalid-plugin-name.yml", `testdata/invalid-plugin-name.yml: plugins[0].name: must match [a-z][a-z0-9_]* (got "Assets!")`},
		{"invalid-plugin-reserved.yml", `testdata/invalid-plugin-reserved.yml: plugins[0].name: is a top-level alert field (ECS or Kibana); a plugin writes only its own new field (got "kibana")`},
		{"invalid-auth.yml", `testdata/invalid-auth.yml: elasticsearch.username: username and password go together (got "elastic")`},
		{"invalid-no-indices.yml", `testdata/invalid-no-indices.yml: alerts.indices: must list at least one index pattern (got "[]")`},
		{"invalid-source-scheme.yml", `testdata/invalid-source-scheme.yml: rules.sources[0]: URL scheme must be http or https (got "s3://bucket/nist.json")`},
		{"invalid-urls-type.yml", `testdata/invalid-urls-type.yml: invalid config: line 2: cannot unmarshal !!str ` + "`http://...`" + ` into []string`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Load(filepath.Join("testdata", tc.file))
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tc.want {
				t.Fatalf("error\n got: %s\nwant: %s", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
		})
	}
}

func TestLoadValid(t *testing.T) {
	t.Setenv("ELASTICSEARCH_API_KEY", "c2VjcmV0")
	cfg, err := Load("testdata/valid-full.yml")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.Alerts.Fields); got != 8 {
		t.Fatalf("fields = %d, want the 7 defaults plus 1 extra", got)
	}
	if *cfg.Rules.InheritParent || cfg.Plugins[0].Timeout != 5*time.Second || cfg.Daemon.BatchSize != 1000 {
		t.Fatalf("config not read: %+v", cfg)
	}
}

func TestEnvironment(t *testing.T) {
	t.Setenv("ELASTICSEARCH_URL", "http://a:9200, http://b:9200")
	t.Setenv("ELASTICSEARCH_USERNAME", "enricher")
	t.Setenv("ELASTICSEARCH_PASSWORD", "s3cret")
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Elasticsearch.URLs) != 2 || cfg.Elasticsearch.URLs[1] != "http://b:9200" || cfg.Elasticsearch.Password != "s3cret" {
		t.Fatalf("environment not applied: %+v", cfg.Elasticsearch)
	}
	os.Unsetenv("ELASTICSEARCH_URL")
}

func TestDefaults(t *testing.T) {
	t.Setenv("ELASTICSEARCH_URL", "")
	cfg, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Elasticsearch.URLs[0] != "http://127.0.0.1:9200" || cfg.Alerts.Indices[0] != ".alerts-security.alerts-*" ||
		cfg.Output.Root != "attack_mappings" || !*cfg.Rules.InheritParent {
		t.Fatalf("defaults: %+v", cfg)
	}
}
