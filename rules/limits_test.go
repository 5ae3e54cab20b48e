package rules

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadRefusesPipes: a named pipe as a source or in a rules folder is refused at once.
func TestLoadRefusesPipes(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "x.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  LoadConfig
		want string
	}{
		{"source", LoadConfig{Sources: []string{fifo}}, fifo + ": not a regular file (a named pipe)"},
		{"folder", LoadConfig{Dir: dir}, filepath.Join(dir, "x.json") + ": not a regular file (a named pipe)"},
		{"missing folder", LoadConfig{Dir: filepath.Join(dir, "nope")}, "rules folder " + filepath.Join(dir, "nope") + ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { _, err := Load(context.Background(), tc.cfg); done <- err }()
			select {
			case err := <-done:
				if err == nil || err.Error() != tc.want {
					t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Load blocked on a named pipe")
			}
		})
	}
}

// TestRulesYAMLErrors: rules YAML errors name the line and field in YAML's words, and maps
// too large for the decoder's quadratic duplicate check are refused before decoding.
func TestRulesYAMLErrors(t *testing.T) {
	keys := new(strings.Builder)
	keys.WriteString("source: {framework: x}\nmappings: []\nskipped:\n")
	for i := 0; i <= MaxYAMLKeys; i++ {
		fmt.Fprintf(keys, "  k%d: 1\n", i)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"unknown field", "source: {framework: x}\nmappings:\n  - {technique: T1021, capability_id: a, mapping_type: m, colour: red}\n",
			"f.yaml: line 3: unknown field \"colour\""},
		{"wrong types", "source: {framework: x, rows: many}\nmappings: x\n",
			`f.yaml: line 1: want a whole number, got text "many"; line 2: want a list, got text "x"`},
		{"map for text", "source: {framework: x}\nmappings:\n  - {technique: T1021, capability_id: a, mapping_type: m, references: [{a: b}]}\n",
			"f.yaml: line 3: want text, got a map"},
		{"custom tag", "source: !x 5\nmappings: []\n", `f.yaml: line 1: want a map, got a value tagged "!x" "5"`},
		{"too many keys", keys.String(), "f.yaml: line 4: a YAML map with more than 1000 keys"},
		{"too deep", "source: {framework: x}\nmappings: " + strings.Repeat("[", 70) + strings.Repeat("]", 70) + "\n",
			"f.yaml: line 2: YAML nested deeper than 64 levels"},
		{"too large", "source: {framework: x}\n#" + strings.Repeat("x", MaxYAMLBytes) + "\n",
			"f.yaml: larger than the 4 MiB limit of a rules YAML file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeSource("f.yaml", []byte(tc.in))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}
