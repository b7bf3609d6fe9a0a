// Command idem is the single binary of idem: the durable Kafka-compatible broker
// (serve), its operator CLI (topic, group, produce, consume, …) and the lab.
//
// Each subcommand lives in its own file and registers itself on rootCmd in an
// init function, so the command tree reads like the file list.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// rootCmd is the top of the command tree; subcommands attach in init().
var rootCmd = &cobra.Command{
	Use:           "idem",
	Short:         "idem: a durable Kafka-compatible broker that makes delivery guarantees explicit",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "idem:", err)
		os.Exit(1)
	}
}
