package main

import (
	"github.com/spf13/cobra"

	"github.com/idem-dev/idem/internal/benchmark"
)

// newBenchChildCmd is `idem bench serve-child`, hidden: the broker child the
// scale scenarios start, so that its RSS, open files and CPU time in /proc
// are the broker's alone and its startup can be timed from exec. It takes
// --data-dir, --kafka-addr and -X name=value (parsed by
// benchmark.ServeChild, which the benchmark tests run too).
func newBenchChildCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "serve-child",
		Short:              "Run the broker child of the scale scenarios (internal)",
		Hidden:             true,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(_ *cobra.Command, args []string) error {
			return benchmark.ServeChild(args)
		},
	}
}
