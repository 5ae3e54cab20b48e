package plugin

import (
	"io"
	"log/slog"
	"os"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Serve runs impl as an enricher plugin: it completes the handshake with the daemon and
// serves gRPC until the daemon closes the connection or kills the process. Call it from
// main and nothing else:
//
//	func main() { plugin.Serve(myEnricher{}) }
//
// Run by hand (without the daemon) the binary prints a notice and exits 1. Like every
// go-plugin server the process ignores SIGINT; the daemon stops it.
func Serve(impl Enricher) {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{
			ProtocolVersion: {pluginKey: &grpcPlugin{impl: impl}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize))
			return grpc.NewServer(opts...)
		},
	})
}

// Logger returns a *slog.Logger for use inside a plugin. It writes to stderr in the JSON
// form go-plugin understands, so the daemon logs each record at its level, with its
// attributes, under the plugin's name. stdout is reserved for the handshake.
func Logger(level slog.Leveler) *slog.Logger {
	return newPluginLogger(processStderr, level)
}

// processStderr is the process's real stderr, taken before Serve redirects os.Stderr
// into go-plugin's stdio stream (which the daemon logs as plain lines).
var processStderr = os.Stderr

func newPluginLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.MessageKey:
				a.Key = "@message"
			case slog.LevelKey:
				a.Key = "@level"
				lv, _ := a.Value.Any().(slog.Level)
				a.Value = slog.StringValue(hclogLevelName(lv))
			case slog.TimeKey:
				a.Key = "@timestamp"
				a.Value = slog.StringValue(a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			}
			return a
		},
	}))
}

func hclogLevelName(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return "error"
	}
}
