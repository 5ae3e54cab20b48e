package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/enricher-dev/enricher/rules/internal/safeio"
)

// ErrInvalid is wrapped by every error about bad rule content.
var ErrInvalid = errors.New("invalid rules")

// ContentError names the file, row and field of a bad value in rule content.
//
// Its text is "FILE: row N: FIELD "VALUE": problem", where row N is the 1-based index of
// the row in the file's mappings (YAML) or mapping_objects (CTID JSON).
type ContentError struct {
	File  string
	Row   int // 1-based mapping row; 0 when the error is not about a row
	Field string
	Value string
	Err   error
}

func (e *ContentError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Row > 0 {
		fmt.Fprintf(&b, ": row %d", e.Row)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	if e.Value != "" {
		fmt.Fprintf(&b, " %q", e.Value)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *ContentError) Unwrap() error { return ErrInvalid }

// TableFiles are the names of the table files, in a --rules folder as in tables/.
const (
	AliasesFile      = "aliases.yaml"
	RevokedFile      = "revoked.yaml"
	MappingTypesFile = "mapping_types.yaml"
)

func isTableFile(name string) bool {
	switch path.Base(name) {
	case AliasesFile, RevokedFile, MappingTypesFile:
		return true
	}
	return false
}

// DecodeFile strictly decodes one mapping file in the rules format and validates it.
// name is used in errors.
func DecodeFile(name string, data []byte) (*File, error) {
	var f File
	if err := checkYAML(data); err != nil {
		return nil, &ContentError{File: name, Err: err}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ContentError{File: name, Err: errors.New("empty file")}
		}
		return nil, &ContentError{File: name, Err: yamlError(err)}
	}
	if err := f.Validate(name); err != nil {
		return nil, err
	}
	f.Source.Path = name
	return &f, nil
}

// Validate checks the required fields of a mapping file.
func (f *File) Validate(name string) error {
	if f.Source.Framework == "" {
		return &ContentError{File: name, Field: "source.framework", Err: errors.New("must be set")}
	}
	for i, m := range f.Mappings {
		row := i + 1
		if id := NormalizeTechniqueID(m.Technique); !IsTechniqueID(id) {
			return &ContentError{File: name, Row: row, Field: "technique", Value: m.Technique,
				Err: errors.New("not an ATT&CK technique ID (want T1234 or T1234.567)")}
		}
		if strings.TrimSpace(m.CapabilityID) == "" {
			return &ContentError{File: name, Row: row, Field: "capability_id", Err: errors.New("must be set")}
		}
		if strings.TrimSpace(m.MappingType) == "" {
			return &ContentError{File: name, Row: row, Field: "mapping_type", Err: errors.New("must be set")}
		}
		if m.RelatedScore != "" && !IsTechniqueID(NormalizeTechniqueID(m.RelatedScore)) {
			return &ContentError{File: name, Row: row, Field: "related_score", Value: m.RelatedScore,
				Err: errors.New("not an ATT&CK technique ID")}
		}
	}
	return nil
}

// LoadTables reads the built-in tables and then, for each folder given, its
// aliases.yaml, revoked.yaml and mapping_types.yaml if present; later entries win.
func LoadTables(dirs ...fs.FS) (*Tables, error) {
	t := newTables()
	sub, err := fs.Sub(Builtin, "tables")
	if err != nil {
		return nil, err
	}
	for _, fsys := range append([]fs.FS{sub}, dirs...) {
		if err := t.read(fsys); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *Tables) read(fsys fs.FS) error {
	var aliases struct {
		Aliases []Alias `yaml:"aliases"`
	}
	var revoked struct {
		Revoked []Revocation `yaml:"revoked"`
	}
	var types struct {
		MappingTypes []MappingTypeDef `yaml:"mapping_types"`
	}
	for _, f := range []struct {
		name string
		v    any
	}{{AliasesFile, &aliases}, {RevokedFile, &revoked}, {MappingTypesFile, &types}} {
		info, err := fs.Stat(fsys, f.name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", f.name, err)
		}
		if !info.Mode().IsRegular() {
			return &ContentError{File: f.name, Err: fmt.Errorf("not a regular file (%s)", safeio.ModeName(info.Mode()))}
		}
		if info.Size() > MaxTableBytes {
			return &ContentError{File: f.name, Err: fmt.Errorf("larger than the %s limit of a table file", safeio.Size(MaxTableBytes))}
		}
		data, err := fs.ReadFile(fsys, f.name)
		if err != nil {
			return fmt.Errorf("read %s: %w", f.name, err)
		}
		if err := checkYAML(data); err != nil {
			return &ContentError{File: f.name, Err: err}
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(f.v); err != nil && !errors.Is(err, io.EOF) {
			return &ContentError{File: f.name, Err: yamlError(err)}
		}
	}
	for i, a := range aliases.Aliases {
		if a.From == "" || a.To == "" {
			return &ContentError{File: AliasesFile, Row: i + 1, Field: "from/to", Err: errors.New("both must be set")}
		}
		t.addAlias(a)
	}
	for i, r := range revoked.Revoked {
		if !IsTechniqueID(NormalizeTechniqueID(r.ID)) {
			return &ContentError{File: RevokedFile, Row: i + 1, Field: "id", Value: r.ID, Err: errors.New("not an ATT&CK technique ID")}
		}
		for _, id := range r.ReplacedBy {
			if !IsTechniqueID(NormalizeTechniqueID(id)) {
				return &ContentError{File: RevokedFile, Row: i + 1, Field: "replaced_by", Value: id, Err: errors.New("not an ATT&CK technique ID")}
			}
		}
		t.addRevocation(r)
	}
	for i, d := range types.MappingTypes {
		switch d.Kind {
		case KindControl, KindDetection, KindRelated:
		default:
			return &ContentError{File: MappingTypesFile, Row: i + 1, Field: "kind", Value: string(d.Kind),
				Err: errors.New("must be control, detection or related")}
		}
		t.addMappingType(d)
	}
	return nil
}

// ReadDir reads every mapping file in fsys: *.yaml and *.yml in the rules format (except
// the table files) and *.json in the CTID unified format. Files are read in name order;
// the first bad file stops the load with an error naming it.
func ReadDir(fsys fs.FS) ([]*File, error) {
	return ReadDirContext(context.Background(), fsys)
}

// ReadDirContext is ReadDir checking ctx between files. A mapping file that is not a regular
// file (a named pipe, a link to a folder) is an error naming it; YAML files are bounded by
// MaxYAMLBytes and JSON files by MaxSourceBytes.
func ReadDirContext(ctx context.Context, fsys fs.FS) ([]*File, error) {
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || isTableFile(p) {
			return nil
		}
		if ext := path.Ext(p); ext == ".yaml" || ext == ".yml" || ext == ".json" {
			if err := checkRegular(fsys, p, d.Type()); err != nil {
				return err
			}
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	files := make([]*File, 0, len(names))
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := fsys.Open(n)
		if err != nil {
			return nil, err
		}
		f, err := DecodeSourceReader(ctx, n, safeio.LimitReader(n, r, MaxSourceBytes))
		r.Close()
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return files, nil
}

// checkRegular fails unless name (of type mode, as a directory entry says) is a regular
// file or a link to one. It looks before anything opens the file, so that a named pipe
// cannot block the load.
func checkRegular(fsys fs.FS, name string, mode fs.FileMode) error {
	if mode&fs.ModeSymlink != 0 {
		info, err := fs.Stat(fsys, name)
		if err != nil {
			return err
		}
		mode = info.Mode()
	}
	if !mode.IsRegular() {
		return &ContentError{File: name, Err: fmt.Errorf("not a regular file (%s)", safeio.ModeName(mode))}
	}
	return nil
}

// BuiltinVersion labels the built-in content; bump it whenever builtin/ changes.
const BuiltinVersion = "builtin-t1021.002-1"

// LoadBuiltin returns the ruleset built from the embedded content.
func LoadBuiltin(opts Options) (*Ruleset, error) {
	sub, err := fs.Sub(Builtin, "builtin")
	if err != nil {
		return nil, err
	}
	files, err := ReadDir(sub)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		f.Source.Path = "builtin/" + f.Source.Path
	}
	tables, err := LoadTables()
	if err != nil {
		return nil, err
	}
	if opts.Version == "" {
		opts.Version = BuiltinVersion
	}
	return Build(files, tables, opts)
}

// LoadDir returns the ruleset built from a --rules folder: its mapping files, and the
// built-in tables extended by the folder's own.
func LoadDir(fsys fs.FS, opts Options) (*Ruleset, error) {
	files, err := ReadDir(fsys)
	if err != nil {
		return nil, err
	}
	tables, err := LoadTables(fsys)
	if err != nil {
		return nil, err
	}
	return Build(files, tables, opts)
}
