// Command enricher-asset-inventory is an enricher plugin adding host criticality, owner
// and business unit from a CSV asset inventory. The daemon starts it; see ../../README.md.
package main

import (
	"log/slog"

	"github.com/enricher-dev/enricher/plugin"
	"github.com/enricher-dev/enricher/plugin/examples/assetinventory"
)

func main() {
	plugin.Serve(assetinventory.New(plugin.Logger(slog.LevelInfo)))
}
