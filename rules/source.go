package rules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
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

// MaxSourceBytes bounds the size of one source (the largest CTID file is ~2 MB).
const MaxSourceBytes = 256 << 20

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

// LoadFiles reads Dir's files and tables and then every source, in order.
func LoadFiles(ctx context.Context, cfg LoadConfig) ([]*File, *Tables, error) {
	var files []*File
	var tables *Tables
	var err error
	if cfg.Dir != "" {
		if st, err := os.Stat(cfg.Dir); err != nil {
			return nil, nil, err
		} else if !st.IsDir() {
			return nil, nil, fmt.Errorf("%s: not a directory", cfg.Dir)
		}
		fsys := os.DirFS(cfg.Dir)
		if files, err = ReadDir(fsys); err != nil {
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
				loaded[i], errs[i] = LoadSource(ctx, cfg.HTTPClient, cfg.FetchTimeout, cfg.Sources[i])
				if cfg.Progress != nil {
					mu.Lock()
					cfg.Progress(done, len(cfg.Sources), cfg.Sources[i])
					done++
					mu.Unlock()
				}
			}
		}()
	}
	for i := range cfg.Sources {
		next <- i
	}
	close(next)
	wg.Wait()
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
	data, err := ReadSource(ctx, client, timeout, src)
	if err != nil {
		return nil, err
	}
	return DecodeSource(src, data)
}

// IsURL reports whether a source is an http(s) URL.
func IsURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// ReadSource returns the bytes of a path or an http(s) URL. URL fetches honour ctx and
// are bounded by timeout (DefaultFetchTimeout when zero) and MaxSourceBytes.
func ReadSource(ctx context.Context, client *http.Client, timeout time.Duration, src string) ([]byte, error) {
	if strings.Contains(src, "://") && !IsURL(src) {
		return nil, fmt.Errorf("%s: unsupported URL scheme (want http or https)", src)
	}
	if !IsURL(src) {
		return os.ReadFile(src)
	}
	if client == nil {
		client = http.DefaultClient
	}
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	req.Header.Set("Accept", "application/json, application/yaml;q=0.9, */*;q=0.5")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", src, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", src, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxSourceBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", src, err)
	}
	if len(data) > MaxSourceBytes {
		return nil, fmt.Errorf("fetch %s: larger than %d bytes", src, MaxSourceBytes)
	}
	return data, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// FileName is the name `enricher rules import` gives a release's YAML file:
// FRAMEWORK-VERSION_attack-ATTACK-DOMAIN.yaml, with '/' in dates turned into '.'.
func FileName(s *Source) string {
	clean := func(v string) string {
		v = strings.ReplaceAll(v, "/", ".")
		return strings.Trim(unsafeName.ReplaceAllString(v, "_"), "_")
	}
	name := clean(s.Framework) + "-" + clean(s.FrameworkVersion) + "_attack-" + clean(s.AttackVersion)
	if s.Domain != "" {
		name += "-" + clean(s.Domain)
	}
	return name + ".yaml"
}

// WriteFile writes a release in the rules YAML format into dir and returns the path.
func WriteFile(dir string, f *File) (string, error) {
	p := filepath.Join(dir, FileName(&f.Source))
	var b strings.Builder
	fmt.Fprintf(&b, "# %s %s mappings to ATT&CK %s (%s), imported by `enricher rules import`.\n",
		f.Source.Framework, f.Source.FrameworkVersion, f.Source.AttackVersion, f.Source.Domain)
	fmt.Fprintf(&b, "# Values are as published; enricher normalizes them when it loads this file.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, p)
}
