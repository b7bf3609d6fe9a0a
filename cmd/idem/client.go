package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// clientFlags are the connection flags shared by every command that talks to
// a broker as a client (topic, group, produce, consume). As in rpk, -X sets a
// client property by name, so scripts can say either --brokers or
// -X brokers=…; they are registered per command tree, not on the root,
// because `serve` uses -X for broker properties.
type clientFlags struct {
	brokers []string
	props   []string
}

var client clientFlags

// addClientFlags registers --brokers and -X as persistent flags of cmd.
func addClientFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().StringSliceVar(&client.brokers, "brokers", []string{"127.0.0.1:9092"}, "comma-separated seed brokers (host:port)")
	cmd.PersistentFlags().StringArrayVarP(&client.props, "set", "X", nil, "client property name=value (brokers, client.id); repeatable")
}

// clientProps lists the -X properties client commands understand.
var clientProps = []string{"brokers", "client.id"}

// opts turns the flags into kgo options. Unknown -X names are an error, not
// silently ignored: a typo must not send records somewhere unexpected.
func (f *clientFlags) opts() ([]kgo.Opt, error) {
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
			return nil, fmt.Errorf("-X %s: unknown client property %q (known: %s)", p, name, strings.Join(clientProps, ", "))
		}
	}
	return append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID("idem-cli")}, opts...), nil
}

// newClient builds a kgo client from the connection flags plus extra.
func newClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := client.opts()
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}

// newAdmin builds an admin client; close it with the returned func.
func newAdmin() (*kadm.Client, func(), error) {
	cl, err := newClient()
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}
