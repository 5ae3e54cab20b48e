package coverage

import (
	"bufio"
	"bytes"
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

	"github.com/enricher-dev/enricher/rules/internal/safeio"
)

// ScanOptions tune Scan.
type ScanOptions struct {
	// Workers is the number of files parsed at once; default GOMAXPROCS.
	Workers int
	// Progress, when set, is called after each file with the number of files done and the
	// total. It is called from several goroutines at once and must be cheap.
	Progress func(done, total int)
	// MaxFileSize skips larger files (default MaxExportBytes). TOML and YAML files are
	// further bounded by MaxRuleFileBytes.
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
// path named explicitly is always included. A path that is a link to a folder is walked;
// links inside a folder are listed as they are and not followed into folders (Scan reports
// a link to a folder, a named pipe or a device as skipped). A path named explicitly that is
// neither a regular file nor a folder is an error naming it.
func ListFiles(paths []string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			if !info.Mode().IsRegular() {
				return nil, fmt.Errorf("%s: not a rule file or folder (%s)", root, safeio.ModeName(info.Mode()))
			}
			if !seen[root] {
				seen[root] = true
				files = append(files, root)
			}
			continue
		}
		walkRoot := root
		if l, err := os.Lstat(root); err == nil && l.Mode()&fs.ModeSymlink != 0 {
			// WalkDir does not follow a root that is a link; with a trailing separator the
			// system resolves it, and the paths below still start with root.
			walkRoot = root + string(filepath.Separator)
		}
		err = filepath.WalkDir(walkRoot, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != walkRoot && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() && !seen[p] {
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
		maxSize = MaxExportBytes
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
				if ctx.Err() != nil {
					continue
				}
				results[i] = parseOne(ctx, files[i], maxSize)
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
	if cerr == nil {
		cerr = ctx.Err()
	}
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

// parseOne reads and parses one file. It opens only regular files (without blocking on a
// named pipe), and reads a TOML or YAML file whole only up to MaxRuleFileBytes; a Kibana
// export larger than that is read a line at a time.
func parseOne(ctx context.Context, path string, maxSize int64) fileResult {
	fail := func(err error) fileResult { return fileResult{err: &Issue{Path: path, Reason: err.Error()}} }
	skip := func(reason string) fileResult { return fileResult{skipped: &Issue{Path: path, Reason: reason}} }
	info, err := os.Stat(path)
	if err != nil {
		return fail(err)
	}
	if info.IsDir() {
		return skip("a link to a folder (not followed)")
	}
	if !info.Mode().IsRegular() {
		return skip("not a regular file (" + safeio.ModeName(info.Mode()) + ")")
	}
	f, info, err := safeio.Open(path)
	if errors.Is(err, safeio.ErrNotRegular) {
		return skip("not a regular file")
	}
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if info.Size() > maxSize {
		return skip(fmt.Sprintf("larger than %d bytes", maxSize))
	}
	r := safeio.LimitReader(path, f, maxSize)
	var rs []Rule
	var warnings []Issue
	if info.Size() > MaxRuleFileBytes {
		br := bufio.NewReaderSize(r, 64<<10)
		head, _ := br.Peek(8000)
		if syn := sniff(head); syn == syntaxJSON && bytes.IndexByte(head, 0) < 0 {
			out, issues, bad, nonEmpty, err := readExport(ctx, path, br)
			if err != nil {
				return fail(err)
			}
			if bad == nonEmpty && bad > 0 {
				return fail(fmt.Errorf("no line is a JSON object, and JSON that is not one object a line is read only up to %d bytes: %s",
					MaxRuleFileBytes, issues[0].Reason))
			}
			rs, warnings, err = exportResult(out, issues)
			if err != nil {
				if errors.Is(err, ErrNotRule) {
					return skip(err.Error())
				}
				return fail(err)
			}
			return fileResult{rules: rs, warnings: warnings}
		} else if syn == syntaxTOML || syn == syntaxYAML {
			if !hasRuleMarker(syn, head) {
				return skip(fmt.Sprintf("%s: larger than %d bytes, with no rule keys in its first 8000", ErrNotRule, MaxRuleFileBytes))
			}
			return fail(fmt.Errorf("larger than the %d-byte limit of a TOML or YAML rule file", MaxRuleFileBytes))
		}
		r = br
	}
	data, err := safeio.ReadAll(path, r, maxSize, info.Size())
	if err != nil {
		return fail(err)
	}
	rs, warnings, err = parse(ctx, path, data)
	switch {
	case errors.Is(err, ErrNotRule):
		return skip(err.Error())
	case err != nil:
		return fail(err)
	}
	return fileResult{rules: rs, warnings: warnings}
}
