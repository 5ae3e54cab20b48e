package rules

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/enricher-dev/enricher/rules/internal/safeio"
)

// LoadConfig says where the daemon's mappings come from.
type LoadConfig struct {
	// Dir is a rules folder: mapping files in the rules YAML format (or CTID JSON) and
	// optional aliases.yaml, revoked.yaml and mapping_types.yaml extending the built-in tables.
	Dir string
	// Sources are CTID unified JSON files (or rules YAML files), each a path or an http(s) URL.
	Sources []string
	// KeepAllReleases keeps every loaded release of a framework instead of the newest.
	KeepAllReleases bool
	// HTTPClient fetches URL sources; http.DefaultClient when nil.
	HTTPClient *http.Client
	// FetchTimeout bounds each URL fetch; DefaultFetchTimeout when zero.
	FetchTimeout time.Duration
	// Version labels the ruleset; BuiltinVersion for the built-in content, "custom" otherwise.
	Version string
	// Progress, when set, is called as each source is read (done counts the sources
	// finished before it) and once at the end (done == total). Calls are serialized.
	Progress func(done, total int, source string)
}

// DefaultFetchTimeout bounds one URL fetch.
const DefaultFetchTimeout = 2 * time.Minute

// Limits on rule content, so that a hostile or broken file is refused with an error naming
// it before it costs much memory or time.
const (
	// MaxSourceBytes bounds one CTID JSON source, file or URL (the largest published file is
	// ~2 MB). CTID JSON is decoded one row at a time, so memory does not grow with it while
	// it is read; the ruleset built from it does.
	MaxSourceBytes = 64 << 20
	// MaxYAMLBytes bounds one rules YAML file (the largest import of a published file is
	// ~1.1 MB). YAML is decoded whole, needing about 25 times its size in memory.
	MaxYAMLBytes = 4 << 20
	// MaxTableBytes bounds aliases.yaml, revoked.yaml and mapping_types.yaml.
	MaxTableBytes = 1 << 20
)

// Load returns the ruleset the daemon uses: the built-in one when Dir and Sources are
// empty, else Dir's files plus the sources, normalized and merged together.
func Load(ctx context.Context, cfg LoadConfig) (*Ruleset, error) {
	opts := Options{Version: cfg.Version, KeepAllReleases: cfg.KeepAllReleases}
	if cfg.Dir == "" && len(cfg.Sources) == 0 {
		return LoadBuiltin(opts)
	}
	files, tables, err := LoadFiles(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return Build(files, tables, opts)
}

// LoadFiles reads Dir's files and tables and then every source, in order. It checks ctx
// between files, and CTID JSON decoding checks it every 256 rows.
func LoadFiles(ctx context.Context, cfg LoadConfig) ([]*File, *Tables, error) {
	var files []*File
	var tables *Tables
	var err error
	if cfg.Dir != "" {
		if st, err := os.Stat(cfg.Dir); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, nil, fmt.Errorf("rules folder %s: %w", cfg.Dir, err)
		} else if !st.IsDir() {
			return nil, nil, fmt.Errorf("rules folder %s: not a folder", cfg.Dir)
		}
		fsys := os.DirFS(cfg.Dir)
		if files, err = ReadDirContext(ctx, fsys); err != nil {
			return nil, nil, prefixPath(cfg.Dir, err)
		}
		for _, f := range files {
			f.Source.Path = filepath.Join(cfg.Dir, filepath.FromSlash(f.Source.Path))
		}
		tables, err = LoadTables(fsys)
	} else {
		tables, err = LoadTables()
	}
	if err != nil {
		return nil, nil, prefixPath(cfg.Dir, err)
	}
	// Sources are read and decoded in parallel (one worker per CPU); results keep their order
	// and the first error in source order is returned.
	loaded := make([]*File, len(cfg.Sources))
	errs := make([]error, len(cfg.Sources))
	var mu sync.Mutex
	done := 0
	next := make(chan int)
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(cfg.Sources))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if errs[i] = ctx.Err(); errs[i] == nil {
					loaded[i], errs[i] = LoadSource(ctx, cfg.HTTPClient, cfg.FetchTimeout, cfg.Sources[i])
				}
				if cfg.Progress != nil {
					mu.Lock()
					cfg.Progress(done, len(cfg.Sources), cfg.Sources[i])
					done++
					mu.Unlock()
				}
			}
		}()
	}
feed:
	for i := range cfg.Sources {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, nil, err
		}
		files = append(files, loaded[i])
	}
	if cfg.Progress != nil {
		cfg.Progress(len(cfg.Sources), len(cfg.Sources), "")
	}
	return files, tables, nil
}

func prefixPath(dir string, err error) error {
	var ce *ContentError
	if dir != "" && errors.As(err, &ce) && !filepath.IsAbs(ce.File) {
		c := *ce
		c.File = filepath.Join(dir, filepath.FromSlash(ce.File))
		return &c
	}
	return err
}

// LoadSource reads and decodes one source (a path or an http(s) URL).
func LoadSource(ctx context.Context, client *http.Client, timeout time.Duration, src string) (*File, error) {
	rc, err := OpenSource(ctx, client, timeout, src)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return DecodeSourceReader(ctx, src, rc)
}

// IsURL reports whether a source is an http(s) URL.
func IsURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// ReadSource returns the bytes of a path or an http(s) URL; see OpenSource.
func ReadSource(ctx context.Context, client *http.Client, timeout time.Duration, src string) ([]byte, error) {
	rc, err := OpenSource(ctx, client, timeout, src)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return safeio.ReadAll(src, rc, MaxSourceBytes, 0)
}

// OpenSource opens a path or an http(s) URL for reading; the caller closes it. A path must
// be a regular file (a folder or a named pipe is refused with an error naming it). URL
// fetches honour ctx and are bounded by timeout (DefaultFetchTimeout when zero), which runs
// until Close. Reading more than MaxSourceBytes fails with an error naming the source.
func OpenSource(ctx context.Context, client *http.Client, timeout time.Duration, src string) (io.ReadCloser, error) {
	if strings.Contains(src, "://") && !IsURL(src) {
		return nil, fmt.Errorf("%s: unsupported URL scheme (want http or https)", src)
	}
	if !IsURL(src) {
		f, info, err := safeio.Open(src)
		if err != nil {
			return nil, err
		}
		if info.Size() > MaxSourceBytes {
			f.Close()
			return nil, safeio.TooLargeError(src, info.Size(), MaxSourceBytes)
		}
		return readCloser{safeio.LimitReader(src, f, MaxSourceBytes), f.Close}, nil
	}
	if client == nil {
		client = http.DefaultClient
	}
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	req.Header.Set("Accept", "application/json, application/yaml;q=0.9, */*;q=0.5")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("fetch %s: %w", src, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("fetch %s: %s", src, resp.Status)
	}
	if resp.ContentLength > MaxSourceBytes {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("fetch %w", safeio.TooLargeError(src, resp.ContentLength, MaxSourceBytes))
	}
	return readCloser{safeio.LimitReader(src, resp.Body, MaxSourceBytes), func() error {
		err := resp.Body.Close()
		cancel()
		return err
	}}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// maxNamePart bounds each part of a file name FileName makes, so that a hostile framework
// name cannot make it longer than a file system allows.
const maxNamePart = 64

// FileName is the name `enricher rules import` gives a release's YAML file:
// FRAMEWORK-VERSION_attack-ATTACK-DOMAIN.yaml, with '/' in dates turned into '.'. Each part
// is cut to 64 bytes.
func FileName(s *Source) string {
	clean := func(v string) string {
		v = strings.ReplaceAll(v, "/", ".")
		v = strings.Trim(unsafeName.ReplaceAllString(v, "_"), "_")
		if len(v) > maxNamePart {
			v = v[:maxNamePart]
		}
		return v
	}
	name := clean(s.Framework) + "-" + clean(s.FrameworkVersion) + "_attack-" + clean(s.AttackVersion)
	if s.Domain != "" {
		name += "-" + clean(s.Domain)
	}
	return name + ".yaml"
}

// WriteFile writes a release in the rules YAML format into dir and returns the path. The
// file is written under a temporary name and renamed into place.
func WriteFile(dir string, f *File) (string, error) {
	p := filepath.Join(dir, FileName(&f.Source))
	tmp, err := os.CreateTemp(dir, ".write-*.yaml")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	err = writeHeader(w, &f.Source, len(f.Mappings))
	if err == nil {
		enc := newMappingEncoder(w, -1)
		for i := range f.Mappings {
			if err = enc.encode(&f.Mappings[i]); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return p, os.Rename(tmp.Name(), p)
}
