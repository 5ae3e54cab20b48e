package elastic

import (
	"reflect"
	"testing"
)

func TestBackingPatterns(t *testing.T) {
	got := backingPatterns([]string{".alerts-security.alerts-*", ".alerts-security.alerts-soc", "wazuh-alerts-*",
		"logs-endpoint.alerts-default", ".enricher-state"})
	want := []string{".alerts-security.alerts-*", ".internal.alerts-security.alerts-*",
		".alerts-security.alerts-soc", ".internal.alerts-security.alerts-soc-*", "wazuh-alerts-*", ".ds-wazuh-alerts-*",
		"logs-endpoint.alerts-default", ".ds-logs-endpoint.alerts-default-*", ".enricher-state"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// The README states 79 root fields; a change to enrich.Schema should change it there too.
func TestFieldsAdded(t *testing.T) {
	if got := FieldsAdded(0); got != 79 {
		t.Fatalf("FieldsAdded(0) = %d; update the README's plugin section and this test", got)
	}
	if got := FieldsAdded(2); got != 81 {
		t.Fatalf("FieldsAdded(2) = %d, want 81", got)
	}
}
