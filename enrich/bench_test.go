// Benchmarks of the enrich step; `make bench` prints the side-by-side figures.
package enrich_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/sample"
	"github.com/enricher-dev/enricher/rules"
)

func BenchmarkDocument(b *testing.B) {
	st := enrich.NewAttackStage(bi(b), enrich.AttackOptions{InheritParent: true})
	docs := sample.Generate(1000, 42)
	dec := make([]map[string]any, len(docs))
	for i, d := range docs {
		raw, _ := json.Marshal(d.Source)
		json.Unmarshal(raw, &dec[i])
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		st.Document(dec[i%len(dec)], now)
	}
}

func bi(b *testing.B) *rules.Ruleset {
	rs, err := rules.LoadBuiltin(rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return rs
}
