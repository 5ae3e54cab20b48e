package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich"
)

func TestLoadBadConfigs(t *testing.T) {
	t.Setenv("ELASTICSEARCH_URL", "")
	seen := map[string]bool{}
	defer func() {
		files, _ := filepath.Glob("testdata/invalid-*.yml")
		for _, f := range files {
			if !seen[filepath.Base(f)] {
				t.Errorf("%s has no case in TestLoadBadConfigs", f)
			}
		}
	}()
	for _, tc := range []struct{ file, want string }{
		{"invalid-url-scheme.yml", `testdata/invalid-url-scheme.yml: elasticsearch.urls[0]: must be an http:// or https:// URL (got "ftp://es:9200")`},
		{"invalid-unknown-key.yml", `testdata/invalid-unknown-key.yml: line 2: elasticsearch.url: unknown field (known: api_key, ca_file, password, request_timeout, urls, username)`},
		{"invalid-batch-size.yml", `testdata/invalid-batch-size.yml: daemon.batch_size: must be between 1 and 10000 (got "0")`},
		{"invalid-duration.yml", `testdata/invalid-duration.yml: line 2: daemon.poll_interval: want a duration with a unit, such as 10s or 1m30s (got "soon")`},
		{"invalid-detail.yml", `testdata/invalid-detail.yml: output.detail: must be compact or full (got "verbose")`},
		{"invalid-details-index.yml", `testdata/invalid-details-index.yml: output.details_index: must be a lower-case index name (got "Mapping/Details")`},
		{"invalid-details-state.yml", `testdata/invalid-details-state.yml: output.details_index: is daemon.state_index; the two need their own indices (got ".enricher-state")`},
		{"invalid-details-alerts.yml", `testdata/invalid-details-alerts.yml: output.details_index: matches alerts.indices[0] (enricher-*); mapping details are not alerts (got "enricher-mapping-details")`},
		{"invalid-root.yml", `testdata/invalid-root.yml: output.root: must be one field name without dots (got "attack.mappings")`},
		{"invalid-field-kind.yml", `testdata/invalid-field-kind.yml: alerts.fields[0].kind: must be id or tag (got "number")`},
		{"invalid-plugin-sha.yml", `testdata/invalid-plugin-sha.yml: plugins[0].sha256: must be the binary's SHA-256, 64 lower-case hex digits (got "abc")`},
		{"invalid-plugin-name.yml", `testdata/invalid-plugin-name.yml: plugins[0].name: must match [a-z][a-z0-9_]* (got "Assets!")`},
		{"invalid-plugin-reserved.yml", `testdata/invalid-plugin-reserved.yml: plugins[0].name: is a top-level alert field (ECS or Kibana); a plugin writes only its own new field (got "kibana")`},
		{"invalid-auth.yml", `testdata/invalid-auth.yml: elasticsearch.username: username and password go together (got "elastic")`},
		{"invalid-no-indices.yml", `testdata/invalid-no-indices.yml: alerts.indices: must list at least one index pattern (got "[]")`},
		{"invalid-source-scheme.yml", `testdata/invalid-source-scheme.yml: rules.sources[0]: URL scheme must be http or https (got "s3://bucket/nist.json")`},
		{"invalid-urls-type.yml", `testdata/invalid-urls-type.yml: line 2: elasticsearch.urls: want a list (got "http://es:9200")`},
		{"invalid-batch-size-float.yml", `testdata/invalid-batch-size-float.yml: line 2: daemon.batch_size: want a whole number (got "1.5")`},
		{"invalid-int-range.yml", `testdata/invalid-int-range.yml: line 2: daemon.batch_size: want a whole number (got "99999999999999999999")`},
		{"invalid-duration-number.yml", `testdata/invalid-duration-number.yml: line 2: daemon.poll_interval: want a duration with a unit, such as 10s or 1m30s (got "10")`},
		{"invalid-bool.yml", `testdata/invalid-bool.yml: line 2: rules.inherit_parent: want true or false (got "no")`},
		{"invalid-not-a-map.yml", `testdata/invalid-not-a-map.yml: line 1: daemon: want a map (got "5")`},
		{"invalid-duplicate-key.yml", `testdata/invalid-duplicate-key.yml: line 3: daemon: given twice (also on line 1)`},
		{"invalid-two-documents.yml", `testdata/invalid-two-documents.yml: line 3: a second YAML document; the config is one document (remove the ---)`},
		{"invalid-query-key.yml", `testdata/invalid-query-key.yml: line 4: alerts.query.term: key is a number, not text (keys become JSON object keys; quote it) (got "1")`},
		{"invalid-plugin-config-key.yml", `testdata/invalid-plugin-config-key.yml: line 6: plugins[0].config.lookup: key is a list, not text (keys become JSON object keys; quote it)`},
		{"invalid-listen.yml", `testdata/invalid-listen.yml: daemon.listen: must be host:port with a port from 0 (any free port) to 65535 (got "garbage")`},
		{"invalid-listen-port.yml", `testdata/invalid-listen-port.yml: daemon.listen: must be host:port with a port from 0 (any free port) to 65535 (got ":99999")`},
		{"invalid-ca-dir.yml", `testdata/invalid-ca-dir.yml: elasticsearch.ca_file: is a folder, not a PEM file (got "testdata")`},
		{"invalid-ca-not-pem.yml", `testdata/invalid-ca-not-pem.yml: elasticsearch.ca_file: holds no PEM certificate (got "testdata/valid-full.yml")`},
		{"invalid-field-path.yml", `testdata/invalid-field-path.yml: alerts.extra_fields[0].path: not a field path (names joined by single dots) (got "a..b")`},
		{"invalid-field-in-root.yml", `testdata/invalid-field-in-root.yml: alerts.extra_fields[0].path: is inside output.root (attack_mappings), which enricher writes (got "attack_mappings.techniques")`},
		{"invalid-root-reserved.yml", `testdata/invalid-root-reserved.yml: output.root: is a top-level alert field (ECS, Kibana or Wazuh) or an Elasticsearch metadata field; enricher writes only its own new field (got "threat")`},
		{"invalid-root-timestamp.yml", `testdata/invalid-root-timestamp.yml: output.root: is a top-level alert field (ECS, Kibana or Wazuh) or an Elasticsearch metadata field; enricher writes only its own new field (got "@timestamp")`},
		{"invalid-tag.yml", `testdata/invalid-tag.yml: line 1: daemon: YAML tags other than the standard !! ones are not allowed (got "!custom")`},
		{"invalid-rules-dir.yml", `testdata/invalid-rules-dir.yml: rules.dir: no such folder (got "testdata/no-such-folder")`},
	} {
		seen[tc.file] = true
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
	if got, want := len(cfg.Alerts.Fields), len(enrich.DefaultFields)+1; got != want {
		t.Fatalf("fields = %d, want the %d defaults plus 1 extra", got, want-1)
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

// TestEnvironmentErrors: a bad value from the environment names the variable, not the file.
func TestEnvironmentErrors(t *testing.T) {
	for _, tc := range []struct {
		name, env, value, file, want string
	}{
		{"url without a file", "ELASTICSEARCH_URL", "ftp://es:9200", "",
			`environment ELASTICSEARCH_URL: elasticsearch.urls[0]: must be an http:// or https:// URL (got "ftp://es:9200")`},
		{"url with a file", "ELASTICSEARCH_URL", "es:9200", "testdata/invalid-auth.yml",
			`environment ELASTICSEARCH_URL: elasticsearch.urls[0]: must be an http:// or https:// URL (got "es:9200")`},
		{"username alone", "ELASTICSEARCH_USERNAME", "enricher", "",
			`environment ELASTICSEARCH_USERNAME: elasticsearch.username: username and password go together (got "enricher")`},
		{"username in the file, no password", "ELASTICSEARCH_API_KEY", "", "testdata/invalid-auth.yml",
			`testdata/invalid-auth.yml: elasticsearch.username: username and password go together (got "elastic")`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []string{"ELASTICSEARCH_URL", "ELASTICSEARCH_API_KEY", "ELASTICSEARCH_USERNAME", "ELASTICSEARCH_PASSWORD"} {
				t.Setenv(v, "")
			}
			t.Setenv(tc.env, tc.value)
			_, err := Load(tc.file)
			if err == nil || err.Error() != tc.want || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

// TestHostileConfig: a config file over the size limit, and alias bombs, are refused
// quickly.
func TestHostileConfig(t *testing.T) {
	t.Setenv("ELASTICSEARCH_URL", "")
	dir := t.TempDir()
	var bomb strings.Builder
	bomb.WriteString("alerts:\n  query:\n    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&bomb, "    a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i,
			i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	keys := new(strings.Builder)
	keys.WriteString("alerts:\n  query:\n")
	for i := 0; i <= 1000; i++ {
		fmt.Fprintf(keys, "    k%d: 1\n", i)
	}
	for _, tc := range []struct{ name, content, want string }{
		{"too large", "# " + strings.Repeat("x", MaxConfigBytes) + "\n", "read config: " + filepath.Join(dir, "too large") + ": larger than the 256 KiB limit of a config file"},
		{"alias bomb", bomb.String(), filepath.Join(dir, "alias bomb") + ": line 3: more than 100000 values (aliases included)"},
		{"many keys", keys.String(), filepath.Join(dir, "many keys") + ": line 3: alerts.query: more than 1000 keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := Load(p)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
