// Command idem is the single binary of idem: the durable Kafka-compatible broker
// (serve), its operator CLI (topic, group, produce, consume, …) and the lab.
//
// Each subcommand lives in its own file as a function that builds it;
// newRootCmd assembles the tree, so the command tree reads like the file
// list and nothing is shared between two trees (the tests build their own).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(exitStatus(os.Stderr, newRootCmd().Execute()))
}

// newRootCmd builds the whole command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "idem",
		Short:         "idem: a durable Kafka-compatible broker that makes delivery guarantees explicit",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newTopicCmd(),
		newGroupCmd(),
		newShareCmd(),
		newDLQCmd(),
		newTxnCmd(),
		newProduceCmd(),
		newConsumeCmd(),
		newBenchCmd(),
		newLabCmd(),
		newLabWorkerCmd(),
		newStorageCmd(),
		newWebhooksCmd(),
		newUserCmd(),
		newACLCmd(),
		newVersionCmd(),
	)
	return root
}

// exitError ends the command with an exit status other than 1, which every
// other error gets. err, if set, is printed like any error; nil means the
// command already said why.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitStatus reports err on stderr as "idem: …" and returns the exit status
// it calls for: 0 without an error, an exitError's code, else 1.
func exitStatus(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code, err = ee.code, ee.err
	}
	if err != nil {
		fmt.Fprintln(stderr, "idem:", err)
	}
	return code
}
