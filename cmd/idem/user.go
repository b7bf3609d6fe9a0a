package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/idem-dev/idem/internal/logstore"
	"github.com/idem-dev/idem/internal/security"
	"github.com/idem-dev/idem/internal/topics"
)

// newUserCmd manages SASL/SCRAM users, rpk style. Against a running broker
// it uses AlterUserScramCredentials and DescribeUserScramCredentials (so it
// needs ALTER or DESCRIBE on the cluster when an authorizer is on); with
// --data-dir it writes a stopped broker's security store directly, which
// is how the first administrator of a locked-down broker is created.
func newUserCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Create, delete and list SASL/SCRAM users",
		Long: `Create, delete and list the users SASL clients log in as (SCRAM-SHA-256,
SCRAM-SHA-512; PLAIN logins are checked against the same credentials). Only
a salt and keys derived from the password are stored, never the password.

Without --data-dir the commands talk to a running broker (--brokers, -X).
With --data-dir they work on a stopped broker's data directory: use that to
create the first administrator before a broker with an authorizer ever
starts, then name it in super.users.`,
	}
	client := addClientFlags(cmd)
	var dataDir string
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", "", "work on this stopped broker's data directory instead of a running broker")
	cmd.AddCommand(userCreateCmd(client, &dataDir), userDeleteCmd(client, &dataDir), userListCmd(client, &dataDir))
	return cmd
}

// openOffline opens the security store of a stopped broker, holding the
// data directory's lock so that a running broker is never written under.
func openOffline(dir string) (*security.Store, func(), error) {
	// The first administrator may come before the broker's first start,
	// when the directory does not exist yet.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	unlock, err := topics.LockDataDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (stop the broker, or leave out --data-dir to use a running one)", err)
	}
	s, err := security.Open(security.StoreConfig{FS: logstore.OSFS(), Dir: filepath.Join(dir, "__security")})
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return s, func() { s.Close(); unlock() }, nil
}

func parseMechanisms(names []string) ([]security.ScramMechanism, error) {
	var out []security.ScramMechanism
	for _, n := range names {
		m, ok := security.ParseScramMechanism(n)
		if !ok {
			return nil, fmt.Errorf("--mechanism %q: want SCRAM-SHA-256 or SCRAM-SHA-512", n)
		}
		out = append(out, m)
	}
	return out, nil
}

// readPassword takes --password, or one line of standard input, so that
// scripts need not put a password on a command line.
func readPassword(flag string, stdin io.Reader) (string, error) {
	if flag != "" {
		return flag, nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if line = strings.TrimRight(line, "\r\n"); line == "" {
		return "", errors.New("no password: give --password or one line on standard input")
	}
	return line, nil
}

func userCreateCmd(client *clientFlags, dataDir *string) *cobra.Command {
	var password string
	var mechs []string
	var iterations int
	cmd := &cobra.Command{
		Use:   "create USER",
		Short: "Create a user, or change its password (reads the password from stdin without --password)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[0]
			ms, err := parseMechanisms(mechs)
			if err != nil {
				return err
			}
			pass, err := readPassword(password, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if *dataDir != "" {
				return createOffline(cmd.Context(), *dataDir, user, pass, ms, iterations)
			}
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			var ups []kadm.UpsertSCRAM
			for _, m := range ms {
				ups = append(ups, kadm.UpsertSCRAM{User: user, Mechanism: kadm.ScramMechanism(m), Iterations: int32(iterations), Password: pass})
			}
			res, err := adm.AlterUserSCRAMs(cmd.Context(), nil, ups)
			if err != nil {
				return err
			}
			if err := res.Error(); err != nil {
				return fmt.Errorf("create %s: %w", user, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created user %s (%s)\n", user, strings.Join(mechs, ", "))
			return nil
		},
	}
	cmd.Flags().StringVarP(&password, "password", "p", "", "the password (default: one line of standard input)")
	cmd.Flags().StringSliceVar(&mechs, "mechanism", []string{"SCRAM-SHA-256", "SCRAM-SHA-512"}, "SCRAM mechanisms to create credentials for")
	cmd.Flags().IntVar(&iterations, "iterations", 8192, "PBKDF2 iterations (4096..16384)")
	return cmd
}

func createOffline(ctx context.Context, dir, user, pass string, ms []security.ScramMechanism, iterations int) error {
	s, done, err := openOffline(dir)
	if err != nil {
		return err
	}
	defer done()
	var changes []security.CredentialChange
	for _, m := range ms {
		c, err := security.NewCredential(m, pass, iterations)
		if err != nil {
			return err
		}
		changes = append(changes, security.CredentialChange{User: user, Mechanism: m, Credential: &c})
	}
	return errors.Join(s.AlterCredentials(ctx, changes)...)
}

func userDeleteCmd(client *clientFlags, dataDir *string) *cobra.Command {
	var mechs []string
	cmd := &cobra.Command{
		Use:   "delete USER",
		Short: "Delete a user's credentials (all of them unless --mechanism says which)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[0]
			ms, err := parseMechanisms(mechs)
			if err != nil {
				return err
			}
			if *dataDir != "" {
				s, done, err := openOffline(*dataDir)
				if err != nil {
					return err
				}
				defer done()
				if len(ms) == 0 {
					u, ok := s.User(user)
					if !ok {
						return fmt.Errorf("user %s does not exist", user)
					}
					for _, c := range u.Credentials {
						ms = append(ms, c.Mechanism)
					}
				}
				var changes []security.CredentialChange
				for _, m := range ms {
					changes = append(changes, security.CredentialChange{User: user, Mechanism: m, Delete: true})
				}
				return errors.Join(s.AlterCredentials(cmd.Context(), changes)...)
			}
			adm, done, err := client.newAdmin()
			if err != nil {
				return err
			}
			defer done()
			if len(ms) == 0 {
				desc, err := adm.DescribeUserSCRAMs(cmd.Context(), user)
				if err != nil {
					return err
				}
				if err := desc.Error(); err != nil {
					return fmt.Errorf("user %s: %w", user, err)
				}
				for _, ci := range desc[user].CredInfos {
					ms = append(ms, security.ScramMechanism(ci.Mechanism))
				}
			}
			var dels []kadm.DeleteSCRAM
			for _, m := range ms {
				dels = append(dels, kadm.DeleteSCRAM{User: user, Mechanism: kadm.ScramMechanism(m)})
			}
			res, err := adm.AlterUserSCRAMs(cmd.Context(), dels, nil)
			if err != nil {
				return err
			}
			if err := res.Error(); err != nil {
				return fmt.Errorf("delete %s: %w", user, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted user %s\n", user)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&mechs, "mechanism", nil, "only these SCRAM mechanisms")
	return cmd
}

func userListCmd(client *clientFlags, dataDir *string) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List users and their SCRAM mechanisms",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			type row struct {
				name  string
				mechs []string
			}
			var rows []row
			if *dataDir != "" {
				s, done, err := openOffline(*dataDir)
				if err != nil {
					return err
				}
				defer done()
				for _, u := range s.Users() {
					r := row{name: u.Name}
					for _, c := range u.Credentials {
						r.mechs = append(r.mechs, fmt.Sprintf("%s(%d)", c.Mechanism, c.Iterations))
					}
					rows = append(rows, r)
				}
			} else {
				adm, done, err := client.newAdmin()
				if err != nil {
					return err
				}
				defer done()
				desc, err := adm.DescribeUserSCRAMs(cmd.Context())
				if err != nil {
					return err
				}
				if err := desc.Error(); err != nil {
					return err
				}
				for _, u := range desc.Sorted() {
					r := row{name: u.User}
					for _, c := range u.CredInfos {
						r.mechs = append(r.mechs, fmt.Sprintf("%s(%d)", security.ScramMechanism(c.Mechanism), c.Iterations))
					}
					rows = append(rows, r)
				}
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tMECHANISMS(ITERATIONS)")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\n", r.name, strings.Join(r.mechs, ", "))
			}
			return tw.Flush()
		},
	}
}
