package plugin

import (
	"errors"
	"fmt"

	"github.com/enricher-dev/enricher/enrich"
)

var (
	// ErrPluginUnavailable is returned (wrapped) when a plugin process is not running, has
	// crashed, or timed out. It wraps enrich.ErrStageUnavailable, so the pipeline marks
	// the alerts pending (optional plugin) or defers them (required plugin).
	ErrPluginUnavailable = fmt.Errorf("plugin unavailable: %w", enrich.ErrStageUnavailable)
	// ErrChecksumMismatch is returned when a plugin binary's SHA-256 differs from the
	// configured one. The plugin is not started.
	ErrChecksumMismatch = errors.New("plugin checksum mismatch")
	// ErrHandshake is returned when a process does not complete the go-plugin handshake
	// or negotiates an unsupported protocol version.
	ErrHandshake = errors.New("plugin handshake failed")
	// ErrBadDescription is returned when a plugin's Describe answer is unusable, e.g. its
	// namespace does not equal its configured name.
	ErrBadDescription = errors.New("plugin description rejected")
	// ErrBadResponse is returned when a plugin answers Enrich with the wrong number of
	// patches or a patch that is not a JSON object.
	ErrBadResponse = errors.New("plugin response rejected")
)
