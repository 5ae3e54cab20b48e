package coverage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// ScanOptions tune Scan.
type ScanOptions struct {
	// Workers is the number of files parsed at once; default GOMAXPROCS.
	Workers int
	// Progress, when set, is called after each file with the number of files done and the
	// total. It is called from several goroutines at once and must be cheap.
	Progress func(done, total int)
	// MaxFileSize skips larger files (default 256 MiB).
	MaxFileSize int64
}

// ScanResult is what Scan found.
type ScanResult struct {
	Rules []Rule `json:"-"`
	// Files is the number of files read.
	Files int `json:"files"`
	// Errors are files (or export lines) that look like rules but could not be parsed.
	Errors []Issue `json:"errors,omitempty"`
	// Skipped are files that are not rules of a known shape.
	Skipped []Issue `json:"skipped,omitempty"`
	// Warnings are values skipped inside rules that still count (bad technique IDs,
	// bad lines of an export whose other lines were read).
	Warnings []Issue `json:"warnings,omitempty"`
}

// ListFiles returns the files under paths, each a file or a folder walked recursively,
// in a stable order. Hidden files and folders (.git) inside a folder are left out; a
// path named explicitly is always included.
func ListFiles(paths []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if !seen[root] {
				seen[root] = true
				files = append(files, root)
			}
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() && !seen[p] {
				seen[p] = true
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walk %s: %w", root, err)
		}
	}
	return files, nil
}

type fileResult struct {
	rules    []Rule
	warnings []Issue
	err      *Issue
	skipped  *Issue
}

// Scan reads and parses every rule file under paths with a bounded worker pool. It fails
// only when a path cannot be walked or ctx ends; a bad file is reported in the result.
func Scan(ctx context.Context, paths []string, opts ScanOptions) (*ScanResult, error) {
	files, err := ListFiles(paths)
	if err != nil {
		return nil, err
	}
	return ScanFiles(ctx, files, opts)
}

// ScanFiles parses the given files; see Scan.
func ScanFiles(ctx context.Context, files []string, opts ScanOptions) (*ScanResult, error) {
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, max(len(files), 1))
	maxSize := opts.MaxFileSize
	if maxSize <= 0 {
		maxSize = 256 << 20
	}
	results := make([]fileResult, len(files))
	next := make(chan int)
	var done atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = parseOne(files[i], maxSize)
				n := done.Add(1)
				if opts.Progress != nil {
					opts.Progress(int(n), len(files))
				}
			}
		}()
	}
	var cerr error
feed:
	for i := range files {
		select {
		case next <- i:
		case <-ctx.Done():
			cerr = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if cerr != nil {
		return nil, cerr
	}
	res := &ScanResult{Files: len(files)}
	for _, r := range results {
		res.Rules = append(res.Rules, r.rules...)
		res.Warnings = append(res.Warnings, r.warnings...)
		if r.err != nil {
			res.Errors = append(res.Errors, *r.err)
		}
		if r.skipped != nil {
			res.Skipped = append(res.Skipped, *r.skipped)
		}
	}
	sort.SliceStable(res.Errors, func(i, j int) bool { return res.Errors[i].Path < res.Errors[j].Path })
	return res, nil
}

func parseOne(path string, maxSize int64) fileResult {
	info, err := os.Stat(path)
	if err != nil {
		return fileResult{err: &Issue{Path: path, Reason: err.Error()}}
	}
	if info.Size() > maxSize {
		return fileResult{skipped: &Issue{Path: path, Reason: fmt.Sprintf("larger than %d bytes", maxSize)}}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fileResult{err: &Issue{Path: path, Reason: err.Error()}}
	}
	rs, warnings, err := Parse(path, data)
	switch {
	case errors.Is(err, ErrNotRule):
		return fileResult{skipped: &Issue{Path: path, Reason: err.Error()}}
	case err != nil:
		return fileResult{err: &Issue{Path: path, Reason: err.Error()}}
	}
	return fileResult{rules: rs, warnings: warnings}
}
