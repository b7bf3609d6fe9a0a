package api

// Conversions between the ACL wire types (kmsg) and internal/security's,
// shared by DescribeAcls, CreateAcls and DeleteAcls. The enums carry
// Kafka's numbers on both sides.

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/security"
)

// patternFor is the pattern type a request means: v0 of the ACL APIs
// predates pattern types (KIP-290) and always means LITERAL.
func patternFor(version int16, p kmsg.ACLResourcePatternType) security.PatternType {
	if version == 0 {
		return security.PatternLiteral
	}
	return security.PatternType(p)
}

func aclFilter(version int16, rt kmsg.ACLResourceType, name *string, pt kmsg.ACLResourcePatternType, principal, host *string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) security.Filter {
	return security.Filter{
		ResourceType: security.ResourceType(rt),
		ResourceName: name,
		PatternType:  patternFor(version, pt),
		Principal:    principal,
		Host:         host,
		Operation:    security.Operation(op),
		Permission:   security.Permission(perm),
	}
}
