package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

// newACLCmd manages ACLs, rpk style, through CreateAcls, DescribeAcls and
// DeleteAcls (so it works against any Kafka cluster too, and needs ALTER
// or DESCRIBE on the cluster).
func newACLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Create, list and delete ACLs",
		Long: `Create, list and delete ACLs (the broker must run with
authorizer.class.name=idem). A binding says that a principal may (or may
not) do an operation on a resource from a host:

  idem acl create --allow-principal User:alice --operation read,describe --topic orders
  idem acl create --allow-principal User:app --operation write --topic logs- --resource-pattern-type prefixed
  idem acl list --principal User:alice
  idem acl delete --principal User:alice --topic orders

Operations: all, read, write, create, delete, alter, describe,
cluster_action, describe_configs, alter_configs, idempotent_write.`,
	}
	client := addClientFlags(cmd)
	cmd.AddCommand(aclCreateCmd(client), aclListCmd(client), aclDeleteCmd(client))
	return cmd
}

// aclFlags are the resource, principal, host, operation and pattern flags.
type aclFlags struct {
	topics, groups, txnIDs []string
	cluster                bool
	pattern                string
	allow, deny            []string // create
	principals             []string // list, delete
	hosts                  []string
	operations             []string
	permission             string // list, delete
}

func (f *aclFlags) addResource(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringSliceVar(&f.topics, "topic", nil, "topic names (or prefixes)")
	fl.StringSliceVar(&f.groups, "group", nil, "consumer group ids (or prefixes)")
	fl.StringSliceVar(&f.txnIDs, "transactional-id", nil, "transactional ids (or prefixes)")
	fl.BoolVar(&f.cluster, "cluster", false, "the cluster resource")
	fl.StringSliceVar(&f.hosts, "host", nil, "hosts (default: * for create, any for list and delete)")
	fl.StringSliceVar(&f.operations, "operation", nil, "operations (comma-separated)")
}

type resource struct {
	rt   security.ResourceType
	name string
}

func (f *aclFlags) resources() []resource {
	var out []resource
	for _, t := range f.topics {
		out = append(out, resource{security.ResourceTopic, t})
	}
	for _, g := range f.groups {
		out = append(out, resource{security.ResourceGroup, g})
	}
	for _, x := range f.txnIDs {
		out = append(out, resource{security.ResourceTransactionalID, x})
	}
	if f.cluster {
		out = append(out, resource{security.ResourceCluster, security.ClusterName})
	}
	return out
}

func parseOps(names []string, def security.Operation) ([]security.Operation, error) {
	if len(names) == 0 {
		return []security.Operation{def}, nil
	}
	var out []security.Operation
	for _, n := range names {
		op, ok := security.ParseEnum(security.OperationNames, n)
		if !ok {
			return nil, fmt.Errorf("--operation %q: unknown operation", n)
		}
		out = append(out, op)
	}
	return out, nil
}

func parsePattern(name string, def security.PatternType) (security.PatternType, error) {
	if name == "" {
		return def, nil
	}
	p, ok := security.ParseEnum(security.PatternTypeNames, name)
	if !ok {
		return 0, fmt.Errorf("--resource-pattern-type %q: want literal, prefixed, match or any", name)
	}
	return p, nil
}

func aclCreateCmd(client *clientFlags) *cobra.Command {
	var f aclFlags
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create ACLs: every principal × host × resource × operation given",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res := f.resources()
			if len(res) == 0 {
				return errors.New("name a resource: --topic, --group, --transactional-id or --cluster")
			}
			if len(f.allow)+len(f.deny) == 0 {
				return errors.New("name a principal: --allow-principal or --deny-principal (User:name)")
			}
			if len(f.operations) == 0 {
				return errors.New("name the operations: --operation read,describe,…")
			}
			ops, err := parseOps(f.operations, 0)
			if err != nil {
				return err
			}
			pt, err := parsePattern(f.pattern, security.PatternLiteral)
			if err != nil {
				return err
			}
			hosts := f.hosts
			if len(hosts) == 0 {
				hosts = []string{"*"}
			}
			req := kmsg.NewPtrCreateACLsRequest()
			for perm, principals := range map[security.Permission][]string{security.PermissionAllow: f.allow, security.PermissionDeny: f.deny} {
				for _, p := range principals {
					for _, h := range hosts {
						for _, r := range res {
							for _, op := range ops {
								c := kmsg.NewCreateACLsRequestCreation()
								c.ResourceType, c.ResourceName, c.ResourcePatternType = kmsg.ACLResourceType(r.rt), r.name, kmsg.ACLResourcePatternType(pt)
								c.Principal, c.Host, c.Operation, c.PermissionType = p, h, kmsg.ACLOperation(op), kmsg.ACLPermissionType(perm)
								req.Creations = append(req.Creations, c)
							}
						}
					}
				}
			}
			cl, err := client.newClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			resp, err := req.RequestWith(cmd.Context(), cl)
			if err != nil {
				return err
			}
			var errs []error
			for i, r := range resp.Results {
				c := req.Creations[i]
				b := fmt.Sprintf("%s %s %s:%s:%s %s from %s", security.Permission(c.PermissionType), c.Principal, security.ResourceType(c.ResourceType),
					security.PatternType(c.ResourcePatternType), c.ResourceName, security.Operation(c.Operation), c.Host)
				if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w (%s)", b, err, deref(r.ErrorMessage)))
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), "created", b)
			}
			return errors.Join(errs...)
		},
	}
	f.addResource(cmd)
	cmd.Flags().StringSliceVar(&f.allow, "allow-principal", nil, "principals to allow (User:name, User:*)")
	cmd.Flags().StringSliceVar(&f.deny, "deny-principal", nil, "principals to deny")
	cmd.Flags().StringVar(&f.pattern, "resource-pattern-type", "literal", "literal or prefixed")
	return cmd
}

// filters turns the list/delete flags into ACL filters (one per resource,
// principal, host and operation; ANY where a flag is not given).
func (f *aclFlags) filters() ([]kmsg.DeleteACLsRequestFilter, error) {
	ops, err := parseOps(f.operations, security.OpAny)
	if err != nil {
		return nil, err
	}
	pt, err := parsePattern(f.pattern, security.PatternAny)
	if err != nil {
		return nil, err
	}
	perm := security.PermissionAny
	if f.permission != "" {
		var ok bool
		if perm, ok = security.ParseEnum(security.PermissionNames, f.permission); !ok {
			return nil, fmt.Errorf("--permission %q: want allow, deny or any", f.permission)
		}
	}
	res := f.resources()
	if len(res) == 0 {
		res = []resource{{security.ResourceAny, ""}}
	}
	principals := toPtrs(f.principals)
	hosts := toPtrs(f.hosts)
	var out []kmsg.DeleteACLsRequestFilter
	for _, r := range res {
		for _, p := range principals {
			for _, h := range hosts {
				for _, op := range ops {
					fl := kmsg.NewDeleteACLsRequestFilter()
					fl.ResourceType, fl.ResourcePatternType = kmsg.ACLResourceType(r.rt), kmsg.ACLResourcePatternType(pt)
					if r.rt != security.ResourceAny {
						fl.ResourceName = kmsg.StringPtr(r.name)
					}
					fl.Principal, fl.Host = p, h
					fl.Operation, fl.PermissionType = kmsg.ACLOperation(op), kmsg.ACLPermissionType(perm)
					out = append(out, fl)
				}
			}
		}
	}
	return out, nil
}

// toPtrs is the values as pointers, or one nil (any) when there are none.
func toPtrs(vs []string) []*string {
	if len(vs) == 0 {
		return []*string{nil}
	}
	out := make([]*string, len(vs))
	for i := range vs {
		out[i] = &vs[i]
	}
	return out
}

func addFilterFlags(cmd *cobra.Command, f *aclFlags) {
	f.addResource(cmd)
	cmd.Flags().StringSliceVar(&f.principals, "principal", nil, "principals (default: any)")
	cmd.Flags().StringVar(&f.permission, "permission", "", "allow or deny (default: any)")
	cmd.Flags().StringVar(&f.pattern, "resource-pattern-type", "", "literal, prefixed, match (what applies to the named resource) or any (default)")
}

func printBinding(tw *tabwriter.Writer, rt kmsg.ACLResourceType, name string, pt kmsg.ACLResourcePatternType, principal, host string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) {
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", principal, host, security.ResourceType(rt), name, security.PatternType(pt), security.Operation(op), security.Permission(perm))
}

func aclListCmd(client *clientFlags) *cobra.Command {
	var f aclFlags
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the ACLs that match the filters",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filters, err := f.filters()
			if err != nil {
				return err
			}
			cl, err := client.newClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PRINCIPAL\tHOST\tRESOURCE-TYPE\tRESOURCE-NAME\tPATTERN\tOPERATION\tPERMISSION")
			for _, fl := range filters {
				req := kmsg.NewPtrDescribeACLsRequest()
				req.ResourceType, req.ResourceName, req.ResourcePatternType = fl.ResourceType, fl.ResourceName, fl.ResourcePatternType
				req.Principal, req.Host, req.Operation, req.PermissionType = fl.Principal, fl.Host, fl.Operation, fl.PermissionType
				resp, err := req.RequestWith(cmd.Context(), cl)
				if err != nil {
					return err
				}
				if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
					return fmt.Errorf("%w: %s", err, deref(resp.ErrorMessage))
				}
				for _, r := range resp.Resources {
					for _, a := range r.ACLs {
						printBinding(tw, r.ResourceType, r.ResourceName, r.ResourcePatternType, a.Principal, a.Host, a.Operation, a.PermissionType)
					}
				}
			}
			return tw.Flush()
		},
	}
	addFilterFlags(cmd, &f)
	return cmd
}

func aclDeleteCmd(client *clientFlags) *cobra.Command {
	var f aclFlags
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete the ACLs that match the filters (at least one filter flag is required)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(f.resources())+len(f.principals)+len(f.hosts)+len(f.operations) == 0 && f.permission == "" {
				return errors.New("refusing to delete every ACL: give at least one of --topic, --group, --transactional-id, --cluster, --principal, --host, --operation, --permission")
			}
			filters, err := f.filters()
			if err != nil {
				return err
			}
			cl, err := client.newClient()
			if err != nil {
				return err
			}
			defer cl.Close()
			req := kmsg.NewPtrDeleteACLsRequest()
			req.Filters = filters
			resp, err := req.RequestWith(cmd.Context(), cl)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DELETED PRINCIPAL\tHOST\tRESOURCE-TYPE\tRESOURCE-NAME\tPATTERN\tOPERATION\tPERMISSION")
			var errs []error
			for _, r := range resp.Results {
				if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("%w: %s", err, deref(r.ErrorMessage)))
				}
				for _, a := range r.MatchingACLs {
					printBinding(tw, a.ResourceType, a.ResourceName, a.ResourcePatternType, a.Principal, a.Host, a.Operation, a.PermissionType)
				}
			}
			tw.Flush()
			return errors.Join(errs...)
		},
	}
	addFilterFlags(cmd, &f)
	return cmd
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return strings.TrimSpace(*s)
}
