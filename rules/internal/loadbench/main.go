// Command loadbench prints how long loading every shared CTID mapping file takes:
//
//	go run ./rules/internal/loadbench [DIR]
//
// DIR defaults to ../shared/data/mappings (relative to the repository root, the working
// directory of `make bench`).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/enricher-dev/enricher/rules"
)

func main() {
	dir := "../shared/data/mappings"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	st, err := rules.MeasureLoad(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
	fmt.Println(st)
}
