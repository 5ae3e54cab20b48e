package rules

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/enricher-dev/enricher/rules/internal/safeio"
)

// ImportConfig says what Import reads and where it writes.
type ImportConfig struct {
	// Out is the rules folder to write into; it and its parents are created if missing.
	Out string
	// Sources are CTID unified JSON files or rules YAML files, each a path or an http(s) URL.
	Sources []string
	// HTTPClient fetches URL sources; http.DefaultClient when nil.
	HTTPClient *http.Client
	// FetchTimeout bounds each URL fetch; DefaultFetchTimeout when zero.
	FetchTimeout time.Duration
	// Progress, when set, is called before each source is read (done counts the sources
	// finished) and once at the end (done == total).
	Progress func(done, total int, source string)
}

// Imported is one source Import read.
type Imported struct {
	// Source is the path or URL as given.
	Source string
	// Path is the file written, Out joined with the release's FileName.
	Path string
	// Release is the framework release the source holds.
	Release *Source
	// Mappings is the number of mappings written.
	Mappings int
	// SameAs is set when an earlier source of this import holds the same release with the
	// same content: that source, whose file is written once.
	SameAs string
}

// ErrSameRelease is wrapped by the error for two sources that hold one framework release
// with different content.
var ErrSameRelease = errors.New("same framework release in two sources")

// Import converts each source into the rules YAML format, one file per framework release
// (FileName), and writes them all into cfg.Out, or none. Every file is first written into a
// temporary folder beside Out; only when every source has been read and written are they
// moved into Out (by renaming the folder when Out does not exist, else file by file, putting
// back the previous files if a rename fails). A file of the same name already in Out is
// replaced: importing a release again updates it.
//
// Two sources that hold the same release (framework, version, ATT&CK version and domain) are
// refused with ErrSameRelease unless their content is the same: a rules folder holds one file
// per release, and choosing between, say, a full release and a hand-made excerpt of it is
// the user's call, not something to settle by keeping whichever came last.
//
// CTID JSON is converted one row at a time, so memory does not grow with the source; a
// release whose YAML would be larger than MaxYAMLBytes is refused (it could not be loaded
// back), and should be loaded as a source instead. ctx is checked between sources and
// every 256 rows.
func Import(ctx context.Context, cfg ImportConfig) ([]Imported, error) {
	out, err := filepath.Abs(cfg.Out)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(out); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("%s: not a folder", cfg.Out)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".import-*")
	if err != nil {
		return nil, fmt.Errorf("create a temporary folder beside %s: %w", cfg.Out, err)
	}
	defer os.RemoveAll(stage)

	type staged struct {
		imp Imported
		sum [sha256.Size]byte
	}
	var results []Imported
	byName := map[string]*staged{}
	var names []string
	for i, src := range cfg.Sources {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if cfg.Progress != nil {
			cfg.Progress(i, len(cfg.Sources), src)
		}
		part := filepath.Join(stage, fmt.Sprintf(".part-%d", i))
		rel, n, sum, err := importOne(ctx, cfg, src, part)
		if err != nil {
			return nil, err
		}
		name := FileName(rel)
		imp := Imported{Source: src, Path: filepath.Join(cfg.Out, name), Release: rel, Mappings: n}
		if prev, ok := byName[name]; ok {
			if prev.sum == sum && sameRelease(prev.imp.Release, rel) {
				imp.SameAs = prev.imp.Source
				results = append(results, imp)
				os.Remove(part)
				continue
			}
			return nil, fmt.Errorf("%w: %s (%d mappings) and %s (%d mappings) are both %s, with different content; "+
				"a rules folder holds one file per release: import one of them, or merge them by hand",
				ErrSameRelease, prev.imp.Source, prev.imp.Mappings, src, n, releaseLabel(rel))
		}
		if err := os.Rename(part, filepath.Join(stage, name)); err != nil {
			return nil, err
		}
		results = append(results, imp)
		byName[name] = &staged{imp: imp, sum: sum}
		names = append(names, name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := commitImport(stage, out, names); err != nil {
		return nil, err
	}
	if cfg.Progress != nil {
		cfg.Progress(len(cfg.Sources), len(cfg.Sources), "")
	}
	return results, nil
}

func releaseLabel(s *Source) string {
	l := s.Label()
	if s.Domain != "" {
		l += " " + s.Domain
	}
	return l
}

// sameRelease compares two sources but for where they were read from.
func sameRelease(a, b *Source) bool {
	x, y := *a, *b
	x.Origin, x.Path, y.Origin, y.Path = "", "", "", ""
	return reflect.DeepEqual(x, y)
}

// importOne reads one source and writes it, in the rules YAML format, to path. It returns
// the release, the number of mappings and a hash of them.
func importOne(ctx context.Context, cfg ImportConfig, src, path string) (*Source, int, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	rc, err := OpenSource(ctx, cfg.HTTPClient, cfg.FetchTimeout, src)
	if err != nil {
		return nil, 0, sum, err
	}
	defer rc.Close()
	body, err := os.CreateTemp(filepath.Dir(path), ".body-*")
	if err != nil {
		return nil, 0, sum, err
	}
	defer func() {
		body.Close()
		os.Remove(body.Name())
	}()
	h := sha256.New()
	bw := bufio.NewWriter(io.MultiWriter(body, h))
	enc := newMappingEncoder(bw, MaxYAMLBytes)
	n := 0
	emit := func(m *FileMapping) error {
		n++
		return enc.encode(m)
	}
	var rel *Source
	br := bufio.NewReaderSize(rc, 4096)
	if isJSON(src, br) {
		rel, err = newCTIDConverter(src, emit).decode(ctx, br)
	} else {
		var f *File
		if f, err = DecodeSourceReader(ctx, src, br); err == nil {
			rel = &f.Source
			for i := range f.Mappings {
				if err = emit(&f.Mappings[i]); err != nil {
					break
				}
			}
		}
	}
	tooLarge := func() error {
		return &ContentError{File: src, Err: fmt.Errorf("%w: its rules YAML would be larger than the %s a rules-folder file may hold "+
			"(MaxYAMLBytes); load it as a source instead (rules.sources, --source)", safeio.ErrTooLarge, safeio.Size(MaxYAMLBytes))}
	}
	if errors.Is(err, errYAMLTooLarge) {
		return nil, 0, sum, tooLarge()
	}
	if err != nil {
		return nil, 0, sum, err
	}
	if err := bw.Flush(); err != nil {
		return nil, 0, sum, err
	}
	copy(sum[:], h.Sum(nil))
	rel.Path = ""
	if rel.Framework == "" {
		// A CTID file with neither metadata nor rows: its YAML would not load back.
		return nil, 0, sum, &ContentError{File: src, Field: "metadata.mapping_framework",
			Err: errors.New("no framework in metadata, rows or file name: nothing to import")}
	}

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, 0, sum, err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	if err := writeHeader(w, rel, n); err != nil {
		return nil, 0, sum, err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return nil, 0, sum, err
	}
	if _, err := io.Copy(w, body); err != nil {
		return nil, 0, sum, err
	}
	if err := w.Flush(); err != nil {
		return nil, 0, sum, err
	}
	if st, err := f.Stat(); err == nil && st.Size() > MaxYAMLBytes {
		return nil, 0, sum, tooLarge()
	}
	if err := f.Sync(); err != nil {
		return nil, 0, sum, err
	}
	return rel, n, sum, f.Close()
}

// commitImport moves the staged files into out: by renaming the staging folder when out does
// not exist, else file by file, keeping each replaced file until all are in place so that a
// failed rename puts everything back.
func commitImport(stage, out string, names []string) error {
	if _, err := os.Lstat(out); errors.Is(err, fs.ErrNotExist) {
		if err := os.Chmod(stage, 0o755); err != nil {
			return err
		}
		return os.Rename(stage, out)
	}
	previous := filepath.Join(stage, ".previous")
	if err := os.Mkdir(previous, 0o700); err != nil {
		return err
	}
	type step struct {
		name    string
		hadPrev bool
	}
	var done []step
	undo := func() {
		for i := len(done) - 1; i >= 0; i-- {
			s := done[i]
			os.Rename(filepath.Join(out, s.name), filepath.Join(stage, s.name))
			if s.hadPrev {
				os.Rename(filepath.Join(previous, s.name), filepath.Join(out, s.name))
			}
		}
	}
	for _, name := range names {
		dst := filepath.Join(out, name)
		s := step{name: name}
		if _, err := os.Lstat(dst); err == nil {
			if err := os.Rename(dst, filepath.Join(previous, name)); err != nil {
				undo()
				return fmt.Errorf("move %s aside: %w", dst, err)
			}
			s.hadPrev = true
		}
		if err := os.Rename(filepath.Join(stage, name), dst); err != nil {
			if s.hadPrev {
				os.Rename(filepath.Join(previous, name), dst)
			}
			undo()
			return fmt.Errorf("write %s: %w", dst, err)
		}
		done = append(done, s)
	}
	return nil
}
