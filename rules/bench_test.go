package rules

import (
	"context"
	"os"
	"testing"
)

// BenchmarkLoadAllShared loads every shared CTID file (~17 MB of JSON), normalizes and merges
// them, keeping all releases. Run: go test -bench LoadAllShared -benchmem ./rules/
func BenchmarkLoadAllShared(b *testing.B) {
	files := sharedMappingFiles(b)
	var size int64
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			b.Fatal(err)
		}
		size += st.Size()
	}
	b.SetBytes(size)
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		if _, err := Load(ctx, LoadConfig{Sources: files, KeepAllReleases: true}); err != nil {
			b.Fatal(err)
		}
	}
}

func TestMeasureLoad(t *testing.T) {
	dir := sharedDir(t, "mappings")
	st, err := MeasureLoad(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(st)
	if st.Files != len(sharedMappingFiles(t)) || st.Mappings == 0 {
		t.Errorf("%+v", st)
	}
}
