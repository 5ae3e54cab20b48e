package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/enricher-dev/enricher/enrich"
)

func enrichCommand() command {
	return command{summary: "enrich alert documents read as NDJSON on stdin, written to stdout (no Elasticsearch)", run: runEnrich}
}

// runEnrich reads one _source document per line and writes one line per input line, in
// order: the document with the pipeline's patches merged in, or, for a line that is not a
// JSON object, the line unchanged (reported on stderr with its line number).
func runEnrich(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("enrich", e)
	cfgPath := fs.String("config", "", "config file (YAML)")
	rulesDir := fs.String("rules", "", "rules folder (overrides rules.dir)")
	batch := fs.Int("batch", 500, "alerts per pipeline call")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v (documents are read from stdin)", fs.Args())
	}
	if *batch < 1 {
		return usagef("--batch must be >= 1, got %d", *batch)
	}
	log, err := newLogger(e.stderr, "text", *logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, *rulesDir)
	if err != nil {
		return err
	}
	rs, err := loadRules(ctx, cfg)
	if err != nil {
		return usageError{err}
	}
	parts, err := buildPipeline(ctx, cfg, rs, nil, nil, log)
	if err != nil {
		return err
	}
	defer parts.close(context.WithoutCancel(ctx))

	in := bufio.NewReaderSize(e.stdin, 1<<20)
	out := bufio.NewWriterSize(e.stdout, 1<<20)
	defer out.Flush()
	type line struct {
		raw   []byte
		alert *enrich.Alert // nil: pass through unchanged
	}
	var pending []line
	var bad, lineNo int
	flush := func() error {
		var alerts []*enrich.Alert
		for _, l := range pending {
			if l.alert != nil {
				alerts = append(alerts, l.alert)
			}
		}
		results := parts.pipeline.Run(ctx, alerts)
		i := 0
		for _, l := range pending {
			if l.alert == nil {
				out.Write(l.raw)
				out.WriteByte('\n')
				continue
			}
			r := results[i]
			i++
			if untouched(r, parts.attack) {
				out.Write(l.raw)
				out.WriteByte('\n')
				continue
			}
			for k, v := range r.Doc {
				l.alert.Source[k] = v
			}
			b, err := json.Marshal(l.alert.Source)
			if err != nil {
				return fmt.Errorf("encode alert: %w", err)
			}
			out.Write(b)
			out.WriteByte('\n')
		}
		pending = pending[:0]
		return nil
	}
	for {
		raw, err := in.ReadBytes('\n')
		if len(raw) > 0 {
			lineNo++
			raw = bytes.TrimRight(raw, "\r\n")
			l := line{raw: append([]byte(nil), raw...)}
			var src map[string]any
			if jerr := json.Unmarshal(raw, &src); jerr != nil || src == nil {
				if len(bytes.TrimSpace(raw)) > 0 {
					bad++
					fmt.Fprintf(e.stderr, "enricher enrich: stdin line %d: not a JSON object, passed through unchanged\n", lineNo)
				}
			} else {
				l.alert = &enrich.Alert{ID: fmt.Sprint("line-", lineNo), Source: src}
			}
			pending = append(pending, l)
			if len(pending) >= *batch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err != nil {
			break
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if bad > 0 {
		fmt.Fprintf(e.stderr, "enricher enrich: %d of %d lines were not JSON objects\n", bad, lineNo)
	}
	return nil
}

// untouched reports whether an alert carried nothing the pipeline acted on: no technique
// field at all (the daemon never fetches such alerts) and no plugin output. It is then
// written out unchanged.
func untouched(r enrich.Result, attack *enrich.AttackStage) bool {
	if len(r.Doc) != 1 {
		return false
	}
	d, ok := r.Doc[attack.Namespace()].(*enrich.RootDoc)
	return ok && d.Status() == enrich.StatusNoTechnique && len(d.Problems) == 0 && len(d.Pending) == 0
}
