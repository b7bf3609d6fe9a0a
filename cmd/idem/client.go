package main

import (
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/clientprops"
)

// clientFlags are the connection flags of a command that talks to a broker
// as a client (topic, group, txn, produce, consume, user, acl). As in rpk
// and kcat, -X sets a client property by its librdkafka name, so scripts
// can say either --brokers or -X brokers=…, and connect with
// -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-256 ….
// They are registered per command tree, not on the root, because `serve`
// uses -X for broker properties. Each tree has its own.
type clientFlags struct {
	brokers []string
	props   []string
}

// addClientFlags registers --brokers and -X as persistent flags of cmd and
// returns where they land.
func addClientFlags(cmd *cobra.Command) *clientFlags {
	f := &clientFlags{}
	cmd.PersistentFlags().StringSliceVar(&f.brokers, "brokers", []string{"127.0.0.1:9092"}, "comma-separated seed brokers (host:port)")
	cmd.PersistentFlags().StringArrayVarP(&f.props, "set", "X", nil,
		"client property name=value, repeatable: brokers, client.id, security.protocol, sasl.mechanism, sasl.username, sasl.password, "+
			"sasl.oauthbearer.token, ssl.ca.location, ssl.certificate.location, ssl.key.location, ssl.endpoint.identification.algorithm")
	return f
}

// opts turns the flags into kgo options (internal/clientprops, which idem
// bench and idem lab share). Unknown -X names are an error, not silently
// ignored: a typo must not send records somewhere unexpected, or in clear
// text.
func (f *clientFlags) opts() ([]kgo.Opt, error) {
	props, err := clientprops.Parse(f.props)
	if err != nil {
		return nil, err
	}
	return clientprops.Opts(props, f.brokers, "idem-cli")
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
