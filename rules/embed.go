package rules

import "embed"

// Builtin holds the built-in mapping files (builtin/*.yaml) and tables (tables/*.yaml).
//
//go:embed builtin/*.yaml tables/*.yaml
var Builtin embed.FS
