package rules

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"time"
)

// LoadStats is what MeasureLoad reports.
type LoadStats struct {
	Files    int
	Mappings int
	Elapsed  time.Duration
	// HeapBytes is the live heap held after the load (the ruleset kept in memory).
	HeapBytes uint64
	// AllocBytes is every byte allocated during the load.
	AllocBytes uint64
}

func (s LoadStats) String() string {
	return fmt.Sprintf("load all shared files: %d ms, heap %.1f MB (%d files, %d mappings, %.1f MB allocated)",
		s.Elapsed.Milliseconds(), float64(s.HeapBytes)/(1<<20), s.Files, s.Mappings, float64(s.AllocBytes)/(1<<20))
}

// MeasureLoad loads every CTID mapping file (*_attack-*.json) in dir, keeping all releases,
// and reports the time and memory it took. `make bench` prints it through
// `go run ./rules/internal/loadbench`.
func MeasureLoad(ctx context.Context, dir string) (LoadStats, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_attack-*.json"))
	if err != nil {
		return LoadStats{}, err
	}
	if len(files) == 0 {
		return LoadStats{}, fmt.Errorf("%s: no CTID mapping files (*_attack-*.json)", dir)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	rs, err := Load(ctx, LoadConfig{Sources: files, KeepAllReleases: true})
	elapsed := time.Since(start)
	if err != nil {
		return LoadStats{}, err
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := LoadStats{Files: len(files), Mappings: rs.Len(), Elapsed: elapsed, AllocBytes: after.TotalAlloc - before.TotalAlloc}
	if after.HeapAlloc > before.HeapAlloc {
		st.HeapBytes = after.HeapAlloc - before.HeapAlloc
	}
	runtime.KeepAlive(rs)
	return st, nil
}
