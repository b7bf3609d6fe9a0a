package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clientFlags are the connection flags of a command that talks to a broker
// as a client (topic, group, txn, produce, consume). As in rpk, -X sets a
// client property by name, so scripts can say either --brokers or
// -X brokers=…; they are registered per command tree, not on the root,
// because `serve` uses -X for broker properties. Each tree has its own.
type clientFlags struct {
	brokers []string
	props   []string
}

// addClientFlags registers --brokers and -X as persistent flags of cmd and
// returns where they land.
func addClientFlags(cmd *cobra.Command) *clientFlags {
	f := &clientFlags{}
	cmd.PersistentFlags().StringSliceVar(&f.brokers, "brokers", []string{"127.0.0.1:9092"}, "comma-separated seed brokers (host:port)")
	cmd.PersistentFlags().StringArrayVarP(&f.props, "set", "X", nil, "client property name=value (brokers, client.id); repeatable")
	return f
}

// opts turns the flags into kgo options. Unknown -X names are an error, not
// silently ignored: a typo must not send records somewhere unexpected.
func (f *clientFlags) opts() ([]kgo.Opt, error) {
	known := []string{"brokers", "client.id"}
	seeds := f.brokers
	var opts []kgo.Opt
	for _, p := range f.props {
		name, value, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("-X %q: want name=value", p)
		}
		switch name {
		case "brokers":
			seeds = strings.Split(value, ",")
		case "client.id":
			opts = append(opts, kgo.ClientID(value))
		default:
			return nil, fmt.Errorf("-X %s: unknown client property %q (known: %s)", p, name, strings.Join(known, ", "))
		}
	}
	return append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID("idem-cli")}, opts...), nil
}

// newClient builds a kgo client from the connection flags plus extra.
func (f *clientFlags) newClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := f.opts()
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}

// newAdmin builds an admin client; close it with the returned func.
func (f *clientFlags) newAdmin() (*kadm.Client, func(), error) {
	cl, err := f.newClient()
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}
