package elastic

import (
	"reflect"
	"testing"
)

func TestBackingPatterns(t *testing.T) {
	got := backingPatterns([]string{".alerts-security.alerts-*", ".alerts-security.alerts-soc", "wazuh-alerts-*"})
	want := []string{".alerts-security.alerts-*", ".internal.alerts-security.alerts-*",
		".alerts-security.alerts-soc", ".internal.alerts-security.alerts-soc-*", "wazuh-alerts-*"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
