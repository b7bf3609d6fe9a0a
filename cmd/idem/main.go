// Command idem is the single binary of idem: the durable Kafka-compatible broker
// (serve), its operator CLI (topic, group, produce, consume, …) and the lab.
//
// Each subcommand lives in its own file and registers itself on rootCmd in an
// init function, so the command tree reads like the file list.
package main

import (
	"errors"
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
		var exit exitError
		if errors.As(err, &exit) {
			if exit.msg != "" {
				fmt.Fprintln(os.Stderr, "idem:", exit.msg)
			}
			os.Exit(exit.code)
		}
		fmt.Fprintln(os.Stderr, "idem:", err)
		os.Exit(1)
	}
}

// exitError ends the command with an exit status and an optional message,
// for commands whose status carries meaning (a check that found damage).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return fmt.Sprintf("exit status %d: %s", e.code, e.msg) }
