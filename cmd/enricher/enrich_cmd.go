package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/runner"
)

func enrichCommand() command {
	return command{summary: "enrich alert documents read as NDJSON on stdin, written to stdout (no Elasticsearch)", run: runEnrich}
}

// maxBatchBytes bounds the lines held at once, whatever their number.
const maxBatchBytes = 32 << 20

// runEnrich reads one _source document per line and writes one line per input line, in
// order: the line with enricher's fields spliced in (every other byte as it was), or the
// line unchanged when it carries no technique, is not a JSON object, or is longer than
// daemon.max_alert_bytes (both reported on stderr with the line number).
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
	if *batch < 1 || *batch > 10000 {
		return usagef("--batch must be between 1 and 10000, got %d", *batch)
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
	opts := runnerOptions(cfg)
	opts.MaxAttempts = 1
	off := runner.NewOffline(parts.pipeline, opts, nil, log)
	maxLine := cfg.Daemon.MaxAlertBytes

	in := bufio.NewReaderSize(e.stdin, 64<<10)
	out := bufio.NewWriterSize(e.stdout, 1<<20)
	defer out.Flush()
	type line struct {
		raw   []byte
		alert *enrich.Alert // nil: pass through unchanged
	}
	var pending []line
	var held, skipped, lineNo int
	report := func(format string, args ...any) {
		skipped++
		fmt.Fprintf(e.stderr, "enricher enrich: stdin line %d: "+format+"\n", append([]any{lineNo}, args...)...)
	}
	flush := func() error {
		var alerts []*enrich.Alert
		for _, l := range pending {
			if l.alert != nil {
				alerts = append(alerts, l.alert)
			}
		}
		enriched, err := off.Enrich(ctx, alerts)
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("enrich: %w", err)
		}
		i := 0
		for _, l := range pending {
			b := l.raw
			if l.alert != nil {
				if enriched[i] != nil {
					b = enriched[i]
				}
				i++
			}
			out.Write(b)
			out.WriteByte('\n')
		}
		pending, held = pending[:0], 0
		return nil
	}
	fields := append(parts.pipeline.Fields(), cfg.Output.Root)
	for ctx.Err() == nil {
		raw, long, got, err := readLine(in, maxLine)
		if got {
			lineNo++
		}
		switch {
		case long != nil:
			lineNo++
			// Longer than the limit: flush what is held, then copy it through in pieces.
			if err := flush(); err != nil {
				return err
			}
			n, cerr := copyLine(out, long, in)
			if cerr != nil {
				return cerr
			}
			report("%d bytes, over daemon.max_alert_bytes (%d): passed through unchanged", n, maxLine)
		case got:
			l := line{raw: raw}
			trimmed := bytes.TrimSpace(raw)
			switch {
			case len(trimmed) == 0:
			case !json.Valid(trimmed) || trimmed[0] != '{':
				report("not a JSON object: passed through unchanged")
			default:
				src, derr := enrich.DecodeMembers(trimmed, fields)
				switch {
				case derr != nil:
					report("%v: passed through unchanged", derr)
				case enrich.Carries(src, cfg.Alerts.Fields):
					l.alert = &enrich.Alert{ID: runner.LineID(lineNo), Raw: trimmed, Source: src}
				}
			}
			pending = append(pending, l)
			held += len(raw)
			if len(pending) >= *batch || held >= maxBatchBytes {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read stdin: %w", err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(e.stderr, "enricher enrich: %d of %d lines passed through unchanged (see above)\n", skipped, lineNo)
	}
	return ctx.Err()
}

// readLine returns the next line without its line ending (got: there was one), or, when
// it is longer than max, its first part in long (the rest is still to read).
func readLine(r *bufio.Reader, max int) (line, long []byte, got bool, err error) {
	buf := []byte{}
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > max+2 {
			return nil, append(buf, chunk...), false, nilEOF(err)
		}
		buf = append(buf, chunk...)
		if err == bufio.ErrBufferFull {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), nil, len(buf) > 0, err
	}
}

func nilEOF(err error) error {
	if err == bufio.ErrBufferFull {
		return nil
	}
	return err
}

// copyLine writes the start of an over-long line and the rest of it, read in pieces,
// and returns its length.
func copyLine(out *bufio.Writer, start []byte, in *bufio.Reader) (int, error) {
	n := len(start)
	out.Write(bytes.TrimRight(start, "\r\n"))
	if bytes.HasSuffix(start, []byte("\n")) {
		out.WriteByte('\n')
		return n, nil
	}
	for {
		chunk, err := in.ReadSlice('\n')
		n += len(chunk)
		out.Write(chunk)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			out.WriteByte('\n')
			return n, nil
		}
		return n, err
	}
}
