package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/metrics"
)

// Defaults of the host's failure handling.
const (
	// DefaultTimeout bounds one Enrich call when the config sets none.
	DefaultTimeout = 10 * time.Second
	// maxAttempts is how many times one Enrich call sends its batch: once, plus a retry
	// on a fresh process after each crash.
	maxAttempts = 3
	// startTimeout bounds a process start: exec, handshake, Configure and Describe.
	startTimeout = 10 * time.Second
)

// passEnv are the only environment variables a plugin inherits from the daemon, so
// Elasticsearch credentials never reach it. Plugins get secrets through their config.
var passEnv = []string{"PATH", "HOME", "TMPDIR", "TZ", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR"}

// Host runs one plugin process and makes it an enrich.Stage. It restarts the process
// after a crash or a timeout and is safe for concurrent use.
type Host struct {
	cfg  config.Plugin
	log  *slog.Logger
	m    *metrics.PluginMetrics
	info Info // from the first start; later starts must agree

	launch      func(ctx context.Context) (*proc, error) // process + transport
	backoffBase time.Duration
	backoffMax  time.Duration

	mu        sync.Mutex
	cur       *proc // nil while down
	started   bool  // a process has been started once; later starts are restarts
	failures  int   // consecutive failures (crash, timeout, failed start)
	notBefore time.Time
	closed    bool
}

var _ enrich.Stage = (*Host)(nil)

// proc is one running plugin process (or, in tests, an in-process connection).
type proc struct {
	rpc    Enricher
	info   Info
	exited func() bool
	// stop ends the process: gracefully when hard is false (bounded by ctx), else at once.
	stop func(ctx context.Context, hard bool)
}

// NewHost verifies the plugin binary, starts it, configures it and checks its
// description. It fails, naming the plugin and its path, when the checksum differs from
// cfg.SHA256 (the error gives both), the process does not complete the handshake or
// speaks another protocol version, Configure fails, or the plugin's namespace differs
// from cfg.Name. ctx bounds the start. A nil log discards logs; nil m records nothing.
// Close the Host to stop the process.
func NewHost(ctx context.Context, cfg config.Plugin, log *slog.Logger, m *metrics.PluginMetrics) (*Host, error) {
	if cfg.Name == "" {
		return nil, errors.New("plugin config: name must be set")
	}
	if cfg.Path == "" {
		return nil, fmt.Errorf("plugin %q: path must be set", cfg.Name)
	}
	want, err := hex.DecodeString(cfg.SHA256)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("plugin %q (%s): sha256 %q is not a SHA-256 in hex", cfg.Name, cfg.Path, cfg.SHA256)
	}
	h := newHost(cfg, log, m)
	h.launch = func(ctx context.Context) (*proc, error) { return h.launchProcess(want) }
	if err := h.Open(ctx); err != nil {
		return nil, err
	}
	return h, nil
}

func newHost(cfg config.Plugin, log *slog.Logger, m *metrics.PluginMetrics) *Host {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = metrics.NewPluginMetrics(nil)
	}
	m.Init(cfg.Name)
	return &Host{
		cfg:         cfg,
		log:         log.With("plugin", cfg.Name),
		m:           m,
		backoffBase: 200 * time.Millisecond,
		backoffMax:  30 * time.Second,
	}
}

// Open starts the first process. NewHost calls it.
func (h *Host) Open(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, err := h.startLocked(ctx)
	if err != nil {
		return err
	}
	h.info = p.info
	h.log.Info("plugin started", "path", h.cfg.Path, "plugin_name", p.info.Name,
		"version", p.info.Version, "namespace", p.info.Namespace, "fields", p.info.Fields)
	return nil
}

// Name implements enrich.Stage: the plugin's configured name.
func (h *Host) Name() string { return h.cfg.Name }

// Namespace implements enrich.Stage: the namespace the plugin declared (equal to Name).
func (h *Host) Namespace() string { return h.info.Namespace }

// Fields implements enrich.Stage: the fields the plugin declared.
func (h *Host) Fields() []string { return append([]string(nil), h.info.Fields...) }

// Info returns the plugin's description from its first start.
func (h *Host) Info() Info { return h.info }

// Enrich implements enrich.Stage. It sends the batch (each alert reduced to the plugin's
// declared fields) to the plugin with the configured timeout.
//
//   - Crash (process exit, broken connection): the process is restarted with backoff and
//     the batch sent again, at most 3 sends in all; then an error wrapping
//     ErrPluginUnavailable (and so enrich.ErrStageUnavailable).
//   - Timeout: the call is cancelled, the process killed and restarted, and an error
//     wrapping ErrPluginUnavailable returned (the batch is not resent: it would double
//     the time the pipeline waits).
//   - A crash on every send, and a timeout, also wrap enrich.ErrBatchFailed: the batch may
//     hold the alert that brings the plugin down, and the pipeline isolates it.
//   - Down (a restart is backing off or failed): an error wrapping ErrPluginUnavailable
//     at once, without waiting.
//   - The plugin returns an error or a malformed answer: that error, not retried.
//
// Patches outside the namespace are counted (enricher_plugin_patches_rejected_total)
// and passed on for the pipeline to reject.
func (h *Host) Enrich(ctx context.Context, alerts []*enrich.Alert) ([]enrich.Patch, error) {
	if len(alerts) == 0 {
		return []enrich.Patch{}, nil
	}
	batch := make([]*enrich.Alert, len(alerts))
	for i, a := range alerts {
		batch[i] = &enrich.Alert{ID: a.ID, Index: a.Index, SeqNo: a.SeqNo, PrimaryTerm: a.PrimaryTerm,
			Source: project(a.Source, h.info.Fields)}
	}
	var crashes []string
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		p, err := h.acquire(ctx, attempt > 1)
		if err != nil {
			h.m.Calls.WithLabelValues(h.cfg.Name, metrics.PluginResultUnavailable).Inc()
			if len(crashes) > 0 {
				err = fmt.Errorf("%w (after crash: %s)", err, strings.Join(crashes, "; "))
			}
			return nil, h.unavailable(err)
		}
		callCtx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
		start := time.Now()
		patches, err := p.rpc.Enrich(callCtx, batch)
		d := time.Since(start)
		stopped, timedOut := deadlineHit(ctx, callCtx, err)
		cancel()
		if err == nil && len(patches) != len(batch) {
			err = fmt.Errorf("%w: %d patches for %d alerts", ErrBadResponse, len(patches), len(batch))
		}
		result := h.classify(stopped, timedOut, p, err)
		h.m.Call(h.cfg.Name, result, d)
		switch result {
		case metrics.PluginResultOK:
			h.succeeded()
			h.countRejected(patches)
			return patches, nil
		case metrics.PluginResultCanceled:
			cause := ctx.Err()
			if cause == nil { // the caller's deadline, reported by gRPC a moment early
				cause = context.DeadlineExceeded
			}
			return nil, fmt.Errorf("plugin %s: enrich %d alerts: %w", h.cfg.Name, len(batch), cause)
		case metrics.PluginResultTimeout:
			h.log.Warn("plugin call timed out, killing it", "timeout", h.cfg.Timeout, "alerts", len(batch))
			h.discard(p, "timeout")
			// Restart now so the next batch finds a process; a failure here shows on the
			// next call.
			if _, rerr := h.acquire(ctx, true); rerr != nil {
				h.log.Warn("plugin restart failed", "err", rerr)
			}
			return nil, h.unavailable(fmt.Errorf("enrich %d alerts: no answer within %s: %w: %w", len(batch), h.cfg.Timeout,
				context.DeadlineExceeded, enrich.ErrBatchFailed))
		case metrics.PluginResultCrash:
			h.log.Warn("plugin crashed, restarting", "attempt", attempt, "alerts", len(batch), "err", err)
			h.discard(p, "crash")
			crashes = append(crashes, err.Error())
			continue
		default:
			return nil, fmt.Errorf("plugin %s: enrich %d alerts: %w", h.cfg.Name, len(batch), err)
		}
	}
	return nil, h.unavailable(fmt.Errorf("enrich %d alerts: crashed %d times: %s: %w", len(batch), len(crashes),
		strings.Join(crashes, "; "), enrich.ErrBatchFailed))
}

// deadlineHit tells whether a failed call ended because the caller gave up (ctx done or
// its deadline, shorter than ours, passed) or because the plugin's own timeout passed.
// gRPC may report DeadlineExceeded a moment before callCtx's timer fires, so an error
// with that code at (or a hair before) the deadline counts too.
func deadlineHit(ctx, callCtx context.Context, err error) (callerGone, timedOut bool) {
	if err == nil {
		return false, false
	}
	dl, _ := callCtx.Deadline()
	expired := callCtx.Err() != nil ||
		(status.Code(err) == codes.DeadlineExceeded && time.Until(dl) < 50*time.Millisecond)
	pdl, ok := ctx.Deadline()
	callerBound := ok && !pdl.After(dl)
	callerGone = ctx.Err() != nil || (expired && callerBound)
	return callerGone, expired && !callerGone
}

// classify names the result of one Enrich call.
func (h *Host) classify(callerGone, timedOut bool, p *proc, err error) string {
	switch {
	case err == nil:
		return metrics.PluginResultOK
	case callerGone:
		return metrics.PluginResultCanceled
	case timedOut:
		return metrics.PluginResultTimeout
	case p.exited():
		return metrics.PluginResultCrash
	}
	if _, ok := status.FromError(err); ok {
		switch status.Code(err) {
		case codes.Unavailable, codes.Canceled, codes.Aborted:
			// The connection broke (process died, or is dying) although nobody cancelled.
			return metrics.PluginResultCrash
		}
	}
	return metrics.PluginResultError
}

func (h *Host) unavailable(err error) error {
	return fmt.Errorf("plugin %s: %w: %w", h.cfg.Name, ErrPluginUnavailable, err)
}

func (h *Host) countRejected(patches []enrich.Patch) {
	n := 0
	for _, p := range patches {
		for k := range p {
			if !enrich.HasPrefixField(k, h.info.Namespace) {
				n++
				break
			}
		}
	}
	if n > 0 {
		h.m.PatchRejected(h.cfg.Name, n)
		h.log.Warn("plugin wrote outside its namespace", "namespace", h.info.Namespace, "patches", n)
	}
}

// acquire returns the running process, starting one if there is none. While a restart
// is backing off it fails at once, unless wait is set and the wait fits in the timeout.
func (h *Host) acquire(ctx context.Context, wait bool) (*proc, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		if h.closed {
			return nil, errors.New("host closed")
		}
		if p := h.cur; p != nil {
			if !p.exited() {
				return p, nil
			}
			h.log.Warn("plugin process exited")
			h.dropLocked(p)
			go p.stop(context.Background(), true)
		}
		delay := time.Until(h.notBefore)
		if delay <= 0 {
			break
		}
		if !wait || delay > h.cfg.Timeout {
			return nil, fmt.Errorf("restart backing off for %s after %d failures", delay.Round(time.Millisecond), h.failures)
		}
		h.mu.Unlock()
		err := enrich.Sleep(ctx, delay)
		h.mu.Lock()
		if err != nil {
			return nil, err
		}
		wait = false // waited once; a new backoff set meanwhile is not ours to wait for
	}
	return h.startLocked(ctx)
}

// startLocked starts a process, configures it and checks its description.
func (h *Host) startLocked(ctx context.Context) (*proc, error) {
	p, err := h.startProcess(ctx)
	if err != nil {
		h.failures++
		h.notBefore = time.Now().Add(h.backoff())
		h.m.SetUp(h.cfg.Name, false)
		return nil, err
	}
	if h.started {
		h.m.Restart(h.cfg.Name)
		h.log.Info("plugin restarted")
	}
	h.started = true
	h.cur = p
	h.m.SetUp(h.cfg.Name, true)
	return p, nil
}

func (h *Host) startProcess(ctx context.Context) (*proc, error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	p, err := h.launch(ctx)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*proc, error) {
		p.stop(ctx, true)
		return nil, fmt.Errorf("plugin %q (%s): %w", h.cfg.Name, h.cfg.Path, err)
	}
	cfg := h.cfg.Config
	if cfg == nil {
		cfg = map[string]any{}
	}
	if err := p.rpc.Configure(ctx, cfg); err != nil {
		return fail(fmt.Errorf("configure: %w", err))
	}
	info, err := p.rpc.Describe(ctx)
	if err != nil {
		return fail(fmt.Errorf("describe: %w", err))
	}
	if err := h.checkInfo(info); err != nil {
		return fail(err)
	}
	p.info = info
	return p, nil
}

// checkInfo enforces the namespace rule: the namespace a plugin declares must equal its
// configured name. The first start fixes the fields; later starts must declare the same.
func (h *Host) checkInfo(info Info) error {
	if info.Namespace != h.cfg.Name {
		return fmt.Errorf("%w: declares namespace %q but is configured as %q; the namespace must equal the configured name",
			ErrBadDescription, info.Namespace, h.cfg.Name)
	}
	for i, f := range info.Fields {
		if strings.TrimSpace(f) == "" {
			return fmt.Errorf("%w: fields[%d] is empty", ErrBadDescription, i)
		}
	}
	if h.started && strings.Join(info.Fields, "\x00") != strings.Join(h.info.Fields, "\x00") {
		return fmt.Errorf("%w: fields changed from %q to %q since the first start", ErrBadDescription, h.info.Fields, info.Fields)
	}
	return nil
}

// discard forgets p if it is still the current process, counts a failure and stops it.
func (h *Host) discard(p *proc, why string) {
	h.mu.Lock()
	if h.cur == p {
		h.dropLocked(p)
	}
	h.mu.Unlock()
	h.log.Debug("stopping plugin process", "reason", why)
	p.stop(context.Background(), true)
}

func (h *Host) dropLocked(p *proc) {
	h.cur = nil
	h.failures++
	h.notBefore = time.Now().Add(h.backoff())
	h.m.SetUp(h.cfg.Name, false)
}

func (h *Host) succeeded() {
	h.mu.Lock()
	h.failures = 0
	h.mu.Unlock()
}

// backoff after h.failures consecutive failures: none after the first (one crash is
// restarted at once), then base, 2*base, 4*base, ... up to max.
func (h *Host) backoff() time.Duration {
	if h.failures <= 1 {
		return 0
	}
	d := h.backoffBase
	for i := 2; i < h.failures && d < h.backoffMax; i++ {
		d *= 2
	}
	return min(d, h.backoffMax)
}

// Close stops the plugin process: gracefully, then killed when ctx ends or after 2s
// (go-plugin's Client.Kill waits that long; plugins ignore SIGINT, so the daemon must
// do this). Later Enrich calls fail with
// ErrPluginUnavailable. Close is idempotent.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	h.closed = true
	p := h.cur
	h.cur = nil
	h.mu.Unlock()
	h.m.SetUp(h.cfg.Name, false)
	if p != nil {
		p.stop(ctx, false)
		h.log.Info("plugin stopped")
	}
	return nil
}

// launchProcess starts the binary with go-plugin: checksum verified (our own check for a
// clear error, then go-plugin's SecureConfig), gRPC only, automatic mutual TLS, logs into
// h.log, protocol version checked.
func (h *Host) launchProcess(want []byte) (*proc, error) {
	cmd := exec.Command(h.cfg.Path, h.cfg.Args...)
	if cmd.Err != nil {
		return nil, fmt.Errorf("plugin %q (%s): %w", h.cfg.Name, h.cfg.Path, cmd.Err)
	}
	if err := verifyChecksum(cmd.Path, want); err != nil {
		return nil, fmt.Errorf("plugin %q (%s): %w", h.cfg.Name, h.cfg.Path, err)
	}
	cmd.Env = []string{}
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{
			ProtocolVersion: {pluginKey: &grpcPlugin{}},
		},
		Cmd:              cmd,
		SkipHostEnv:      true,
		SecureConfig:     &goplugin.SecureConfig{Checksum: want, Hash: sha256.New()},
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		Logger:           newHCLog(h.log, "go-plugin"),
		SyncStdout:       newLineLogger(h.log, slog.LevelInfo, "stdout"),
		SyncStderr:       newLineLogger(h.log, slog.LevelWarn, "stderr"),
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
		},
	})
	stop := func(ctx context.Context, hard bool) {
		if hard && cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		done := make(chan struct{})
		go func() { client.Kill(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			if cmd.Process != nil {
				_ = cmd.Process.Kill()
			}
			<-done
		}
	}
	fail := func(err error) (*proc, error) {
		stop(context.Background(), true)
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			err = fmt.Errorf("%w: binary changed during start", ErrChecksumMismatch)
		}
		return nil, fmt.Errorf("plugin %q (%s): %w", h.cfg.Name, h.cfg.Path, err)
	}
	rpcClient, err := client.Client()
	if err != nil {
		if errors.Is(err, goplugin.ErrChecksumsDoNotMatch) {
			return fail(err)
		}
		return fail(fmt.Errorf("%w: %w", ErrHandshake, err))
	}
	if v := client.NegotiatedVersion(); v != ProtocolVersion {
		return fail(fmt.Errorf("%w: plugin speaks protocol version %d, host speaks %d", ErrHandshake, v, ProtocolVersion))
	}
	raw, err := rpcClient.Dispense(pluginKey)
	if err != nil {
		return fail(fmt.Errorf("%w: dispense: %w", ErrHandshake, err))
	}
	rpc, ok := raw.(Enricher)
	if !ok {
		return fail(fmt.Errorf("%w: unexpected client type %T", ErrHandshake, raw))
	}
	return &proc{rpc: rpc, exited: client.Exited, stop: stop}, nil
}

// verifyChecksum compares the file's SHA-256 with want and says both when they differ.
func verifyChecksum(path string, want []byte) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open binary: %w", err)
	}
	defer func() { _ = f.Close() }()
	hash := sha256.New()
	if _, err := io.Copy(hash, f); err != nil {
		return fmt.Errorf("read binary: %w", err)
	}
	if got := hash.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("%w: expected sha256 %x, binary has %x", ErrChecksumMismatch, want, got)
	}
	return nil
}

// lineLogger logs each line written to it, for the plugin's redirected stdout/stderr.
type lineLogger struct {
	log    *slog.Logger
	level  slog.Level
	stream string
	mu     sync.Mutex
	buf    []byte
}

func newLineLogger(log *slog.Logger, level slog.Level, stream string) *lineLogger {
	return &lineLogger{log: log, level: level, stream: stream}
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimRight(string(w.buf[:i]), "\r"); line != "" {
			w.log.Log(context.Background(), w.level, "plugin output", "stream", w.stream, "line", line)
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a very long line without newline: log what we have
		w.log.Log(context.Background(), w.level, "plugin output", "stream", w.stream, "line", string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}
