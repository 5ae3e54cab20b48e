package plugin

import goplugin "github.com/hashicorp/go-plugin"

// ProtocolVersion is the version of the plugin protocol (plugin/proto/enricher/plugin/v1).
// Bump it, together with a new proto package, on any breaking change to the protocol;
// additive changes (new fields, new RPCs) keep it. A host and a plugin only talk when
// they share a version.
const ProtocolVersion = 1

// pluginKey names the one plugin a process serves, in go-plugin's plugin set.
const pluginKey = "enricher"

// Handshake is the fixed go-plugin handshake between the daemon and its plugins.
// The magic cookie is not a secret, only a guard against running a plugin binary by hand.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion: ProtocolVersion,
	// MagicCookieKey and MagicCookieValue should NEVER be changed: every plugin ever
	// built embeds them.
	MagicCookieKey:   "ENRICHER_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "4f7d2c1e-enricher-stage-plugin-9b3a6e0d",
}
