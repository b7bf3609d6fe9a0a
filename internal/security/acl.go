package security

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ResourceType, PatternType, Operation and Permission carry Kafka's wire
// numbers (KIP-140, KIP-290), so the API layer converts by a cast.
type (
	ResourceType int8
	PatternType  int8
	Operation    int8
	Permission   int8
)

// Resource types.
const (
	ResourceAny             ResourceType = 1
	ResourceTopic           ResourceType = 2
	ResourceGroup           ResourceType = 3
	ResourceCluster         ResourceType = 4
	ResourceTransactionalID ResourceType = 5
	ResourceDelegationToken ResourceType = 6
	ResourceUser            ResourceType = 7
)

// Pattern types.
const (
	PatternAny      PatternType = 1
	PatternMatch    PatternType = 2
	PatternLiteral  PatternType = 3
	PatternPrefixed PatternType = 4
)

// Operations.
const (
	OpAny             Operation = 1
	OpAll             Operation = 2
	OpRead            Operation = 3
	OpWrite           Operation = 4
	OpCreate          Operation = 5
	OpDelete          Operation = 6
	OpAlter           Operation = 7
	OpDescribe        Operation = 8
	OpClusterAction   Operation = 9
	OpDescribeConfigs Operation = 10
	OpAlterConfigs    Operation = 11
	OpIdempotentWrite Operation = 12
	OpCreateTokens    Operation = 13
	OpDescribeTokens  Operation = 14
)

// Permissions.
const (
	PermissionAny   Permission = 1
	PermissionDeny  Permission = 2
	PermissionAllow Permission = 3
)

// ClusterName is the name of the one cluster resource.
const ClusterName = "kafka-cluster"

// Wildcard is the literal resource name, principal and host that match
// everything.
const Wildcard = "*"

var (
	resourceNames   = map[ResourceType]string{ResourceAny: "ANY", ResourceTopic: "TOPIC", ResourceGroup: "GROUP", ResourceCluster: "CLUSTER", ResourceTransactionalID: "TRANSACTIONAL_ID", ResourceDelegationToken: "DELEGATION_TOKEN", ResourceUser: "USER"}
	patternNames    = map[PatternType]string{PatternAny: "ANY", PatternMatch: "MATCH", PatternLiteral: "LITERAL", PatternPrefixed: "PREFIXED"}
	operationNames  = map[Operation]string{OpAny: "ANY", OpAll: "ALL", OpRead: "READ", OpWrite: "WRITE", OpCreate: "CREATE", OpDelete: "DELETE", OpAlter: "ALTER", OpDescribe: "DESCRIBE", OpClusterAction: "CLUSTER_ACTION", OpDescribeConfigs: "DESCRIBE_CONFIGS", OpAlterConfigs: "ALTER_CONFIGS", OpIdempotentWrite: "IDEMPOTENT_WRITE", OpCreateTokens: "CREATE_TOKENS", OpDescribeTokens: "DESCRIBE_TOKENS"}
	permissionNames = map[Permission]string{PermissionAny: "ANY", PermissionDeny: "DENY", PermissionAllow: "ALLOW"}
)

func (r ResourceType) String() string { return enumName(resourceNames, r) }
func (p PatternType) String() string  { return enumName(patternNames, p) }
func (o Operation) String() string    { return enumName(operationNames, o) }
func (p Permission) String() string   { return enumName(permissionNames, p) }

func enumName[T ~int8](names map[T]string, v T) string {
	if n, ok := names[v]; ok {
		return n
	}
	return fmt.Sprintf("UNKNOWN(%d)", v)
}

// ParseEnum reads an enum by its name (case and '-'/'_' insensitive), as
// the CLI takes them.
func ParseEnum[T ~int8](names map[T]string, s string) (T, bool) {
	s = strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
	for v, n := range names {
		if n == s {
			return v, true
		}
	}
	return 0, false
}

// Names of the enums, for ParseEnum.
var (
	ResourceTypeNames = resourceNames
	PatternTypeNames  = patternNames
	OperationNames    = operationNames
	PermissionNames   = permissionNames
)

// Binding is one ACL: principal may (or may not) do operation on the
// resources the pattern names, from host.
type Binding struct {
	ResourceType ResourceType `json:"resource_type"`
	ResourceName string       `json:"resource_name"`
	PatternType  PatternType  `json:"pattern_type"`
	Principal    string       `json:"principal"`
	Host         string       `json:"host"`
	Operation    Operation    `json:"operation"`
	Permission   Permission   `json:"permission"`
}

func (b Binding) String() string {
	return fmt.Sprintf("%s %s:%s:%s %s %s from %s", b.Permission, b.ResourceType, b.PatternType, b.ResourceName, b.Principal, b.Operation, b.Host)
}

// key identifies a binding in the store.
func (b Binding) key() string {
	return fmt.Sprintf("%d\x00%d\x00%s\x00%s\x00%s\x00%d\x00%d", b.ResourceType, b.PatternType, b.ResourceName, b.Principal, b.Host, b.Operation, b.Permission)
}

// ErrInvalidACL is wrapped by errors for bindings and filters that Kafka
// refuses with INVALID_REQUEST.
var ErrInvalidACL = errors.New("invalid ACL")

// Validate checks a binding to be created: concrete enums, a LITERAL or
// PREFIXED pattern, a principal of the form Type:name.
func (b Binding) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidACL, fmt.Sprintf(format, args...))
	}
	switch {
	case b.ResourceType <= ResourceAny || b.ResourceType > ResourceUser:
		return bad("resource type %s", b.ResourceType)
	case b.PatternType != PatternLiteral && b.PatternType != PatternPrefixed:
		return bad("pattern type %s (want LITERAL or PREFIXED)", b.PatternType)
	case b.Operation <= OpAny || b.Operation > OpDescribeTokens:
		return bad("operation %s", b.Operation)
	case b.Permission != PermissionAllow && b.Permission != PermissionDeny:
		return bad("permission %s", b.Permission)
	case b.ResourceName == "":
		return bad("empty resource name")
	case b.ResourceType == ResourceCluster && b.ResourceName != ClusterName:
		return bad("the cluster resource is named %q", ClusterName)
	case b.Host == "":
		return bad("empty host (use * for any host)")
	case b.PatternType == PatternPrefixed && b.ResourceName == Wildcard:
		return bad("a PREFIXED pattern cannot be *")
	}
	if typ, name, ok := strings.Cut(b.Principal, ":"); !ok || typ == "" || name == "" {
		return bad("principal %q (want Type:name, e.g. User:alice)", b.Principal)
	}
	return nil
}

// Filter selects bindings for DescribeAcls and DeleteAcls: Any values and
// nil strings match everything; PatternMatch matches the bindings that
// would apply to the named resource.
type Filter struct {
	ResourceType ResourceType
	ResourceName *string
	PatternType  PatternType
	Principal    *string
	Host         *string
	Operation    Operation
	Permission   Permission
}

// Validate refuses filters with unknown enum values.
func (f Filter) Validate() error {
	switch {
	case f.ResourceType < ResourceAny || f.ResourceType > ResourceUser:
		return fmt.Errorf("%w: resource type %s", ErrInvalidACL, f.ResourceType)
	case f.PatternType < PatternAny || f.PatternType > PatternPrefixed:
		return fmt.Errorf("%w: pattern type %s", ErrInvalidACL, f.PatternType)
	case f.Operation < OpAny || f.Operation > OpDescribeTokens:
		return fmt.Errorf("%w: operation %s", ErrInvalidACL, f.Operation)
	case f.Permission < PermissionAny || f.Permission > PermissionAllow:
		return fmt.Errorf("%w: permission %s", ErrInvalidACL, f.Permission)
	}
	return nil
}

// Matches reports whether f selects b.
func (f Filter) Matches(b Binding) bool {
	if f.ResourceType != ResourceAny && f.ResourceType != b.ResourceType {
		return false
	}
	switch f.PatternType {
	case PatternAny:
		if f.ResourceName != nil && *f.ResourceName != b.ResourceName {
			return false
		}
	case PatternMatch:
		if f.ResourceName != nil && !patternCovers(b, *f.ResourceName) {
			return false
		}
	default:
		if f.PatternType != b.PatternType || f.ResourceName != nil && *f.ResourceName != b.ResourceName {
			return false
		}
	}
	return (f.Principal == nil || *f.Principal == b.Principal) &&
		(f.Host == nil || *f.Host == b.Host) &&
		(f.Operation == OpAny || f.Operation == b.Operation) &&
		(f.Permission == PermissionAny || f.Permission == b.Permission)
}

// patternCovers reports whether b's pattern applies to the resource name.
func patternCovers(b Binding, name string) bool {
	switch b.PatternType {
	case PatternLiteral:
		return b.ResourceName == name || b.ResourceName == Wildcard
	case PatternPrefixed:
		return strings.HasPrefix(name, b.ResourceName)
	}
	return false
}

// aclIndex is an immutable index of the bindings by resource, built on
// every change and read without locks on every request.
type aclIndex struct {
	all   []Binding
	types map[ResourceType]*typeIndex
}

type typeIndex struct {
	literal  map[string][]Binding // by exact name; "*" is the wildcard
	prefixed map[string][]Binding // by prefix
	lengths  []int                // the distinct prefix lengths, ascending
}

func newACLIndex(bindings []Binding) *aclIndex {
	ix := &aclIndex{all: bindings, types: map[ResourceType]*typeIndex{}}
	for _, b := range bindings {
		t := ix.types[b.ResourceType]
		if t == nil {
			t = &typeIndex{literal: map[string][]Binding{}, prefixed: map[string][]Binding{}}
			ix.types[b.ResourceType] = t
		}
		if b.PatternType == PatternPrefixed {
			if _, seen := t.prefixed[b.ResourceName]; !seen {
				t.lengths = append(t.lengths, len(b.ResourceName))
			}
			t.prefixed[b.ResourceName] = append(t.prefixed[b.ResourceName], b)
		} else {
			t.literal[b.ResourceName] = append(t.literal[b.ResourceName], b)
		}
	}
	for _, t := range ix.types {
		sort.Ints(t.lengths)
		t.lengths = slices.Compact(t.lengths)
	}
	return ix
}

// each calls fn for every binding that applies to the resource, until fn
// returns false.
func (ix *aclIndex) each(rt ResourceType, name string, fn func(Binding) bool) {
	t := ix.types[rt]
	if t == nil {
		return
	}
	for _, b := range t.literal[name] {
		if !fn(b) {
			return
		}
	}
	if name != Wildcard {
		for _, b := range t.literal[Wildcard] {
			if !fn(b) {
				return
			}
		}
	}
	for _, n := range t.lengths {
		if n > len(name) {
			break
		}
		for _, b := range t.prefixed[name[:n]] {
			if !fn(b) {
				return
			}
		}
	}
}

// Authorizer decides requests from the store's ACLs, super.users and
// allow.everyone.if.no.acl.found. It reads the store's current index on
// every call, so an ACL change applies at once to open connections.
type Authorizer struct {
	store        *Store
	superUsers   map[string]bool
	allowIfNoACL bool
}

// NewAuthorizer returns an authorizer over store's ACLs.
func NewAuthorizer(store *Store, superUsers []string, allowIfNoACL bool) *Authorizer {
	a := &Authorizer{store: store, superUsers: map[string]bool{}, allowIfNoACL: allowIfNoACL}
	for _, u := range superUsers {
		if u = strings.TrimSpace(u); u != "" {
			a.superUsers[u] = true
		}
	}
	return a
}

// Authorize reports whether principal, connected from host, may do op on
// the resource (rt, name). DENY wins; READ, WRITE, DELETE and ALTER imply
// DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS (for ALLOW only).
func (a *Authorizer) Authorize(principal, host string, op Operation, rt ResourceType, name string) bool {
	if a.superUsers[principal] {
		return true
	}
	ix := a.store.acls.Load()
	found, denied, allowed := false, false, false
	ix.each(rt, name, func(b Binding) bool {
		found = true
		if b.Principal != principal && b.Principal != "User:"+Wildcard {
			return true
		}
		if b.Host != Wildcard && b.Host != host {
			return true
		}
		if b.Permission == PermissionDeny {
			if b.Operation == op || b.Operation == OpAll {
				denied = true
				return false
			}
			return true
		}
		if b.Operation == op || b.Operation == OpAll || implies(b.Operation, op) {
			allowed = true
		}
		return true
	})
	switch {
	case denied:
		return false
	case allowed:
		return true
	}
	return !found && a.allowIfNoACL
}

// implies reports whether an ALLOW of have grants want too (KIP-253).
func implies(have, want Operation) bool {
	switch want {
	case OpDescribe:
		return have == OpRead || have == OpWrite || have == OpDelete || have == OpAlter
	case OpDescribeConfigs:
		return have == OpAlterConfigs
	}
	return false
}

// SuperUser reports whether principal bypasses every check.
func (a *Authorizer) SuperUser(principal string) bool { return a.superUsers[principal] }

// OperationsOn lists the operations principal may do on the resource, for
// IncludeAuthorizedOperations: ops are the operations Kafka lists for the
// resource type.
func (a *Authorizer) OperationsOn(principal, host string, rt ResourceType, name string, ops []Operation) []Operation {
	var out []Operation
	for _, op := range ops {
		if a.Authorize(principal, host, op, rt, name) {
			out = append(out, op)
		}
	}
	return out
}

// AllowedOnSome reports whether principal may do op on at least one
// resource of type rt (Kafka's authorizeByResourceType, KIP-679: WRITE on
// some topic lets a producer be idempotent without IDEMPOTENT_WRITE). An
// ALLOW binding for the principal, host and operation (ALL included) is
// enough unless a DENY covers every resource of the type (a literal * or an
// empty prefix).
func (a *Authorizer) AllowedOnSome(principal, host string, op Operation, rt ResourceType) bool {
	if a.superUsers[principal] {
		return true
	}
	applies := func(b Binding) bool {
		return (b.Principal == principal || b.Principal == "User:"+Wildcard) && (b.Host == Wildcard || b.Host == host) &&
			(b.Operation == op || b.Operation == OpAll)
	}
	allowed := false
	for _, b := range a.store.acls.Load().all {
		if b.ResourceType != rt || !applies(b) {
			continue
		}
		if b.Permission == PermissionDeny && (b.PatternType == PatternLiteral && b.ResourceName == Wildcard || b.PatternType == PatternPrefixed && b.ResourceName == "") {
			return false
		}
		if b.Permission == PermissionAllow {
			allowed = true
		}
	}
	return allowed || a.allowIfNoACL && len(a.store.acls.Load().types[rt].allNames()) == 0
}

// allNames lists the resource names with bindings (nil-safe).
func (t *typeIndex) allNames() []string {
	if t == nil {
		return nil
	}
	var out []string
	for n := range t.literal {
		out = append(out, n)
	}
	for n := range t.prefixed {
		out = append(out, n)
	}
	return out
}
