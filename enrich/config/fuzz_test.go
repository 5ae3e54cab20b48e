package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// goTypeNames matches Go type names that must not reach a user.
var goTypeNames = regexp.MustCompile(`interface \{\}|map\[|\[\]|time\.Duration|config\.[A-Z]|enrich\.[A-Z]|reflect|cannot unmarshal`)

// FuzzDecode feeds YAML to the config decoder and validator: they must not panic, every
// error must wrap ErrInvalid and speak YAML rather than Go, and a config that decodes must
// validate or fail with a ValidationError.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("daemon: {batch_size: 1.5, poll_interval: 10}\n"))
	f.Add([]byte("alerts:\n  query: {1: x, ? [a]: b}\n---\nx: 1\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		defer func() {
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v for %d bytes", d, len(data))
			}
		}()
		cfg := Default()
		err := decode(data, &cfg)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			msg := err.Error()
			var ve *ValidationError
			if errors.As(err, &ve) {
				msg = ve.Err.Error() // the value may hold anything
			}
			if goTypeNames.MatchString(msg) {
				t.Fatalf("Go type names in %q", err)
			}
			return
		}
		cfg.fillDefaults()
		if err := cfg.Validate(); err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("not a ValidationError: %v", err)
			}
		}
	})
}
