package group

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// consumerClient is what the script remembers of a KIP-848 member: its
// member id (the client's name: v1 clients choose their own), its epoch and
// the assignment it was last given, which it reports as owned unless the
// command says otherwise.
type consumerClient struct {
	epoch     int32
	owned     Assignment
	rebalance time.Duration // sent with every heartbeat, as clients do
}

// topicID derives a stable id from a topic name, so scripts can name topics.
func topicID(name string) TopicID {
	sum := sha256.Sum256([]byte(name))
	var id TopicID
	copy(id[:], sum[:])
	return id
}

// formatAssignment prints an assignment by topic name: "t:0,1 u:2".
func (e *scriptEnv) formatAssignment(a Assignment) string {
	if a.count() == 0 {
		return "-"
	}
	names := map[string]TopicID{}
	for _, t := range a.sortedTopics() {
		name := e.topics.Name(t)
		if name == "" {
			name = fmt.Sprintf("%x", t[:2])
		}
		names[name] = t
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(names)) {
		var ps []string
		for _, p := range a[names[name]] {
			ps = append(ps, strconv.Itoa(int(p)))
		}
		parts = append(parts, name+":"+strings.Join(ps, ","))
	}
	return strings.Join(parts, " ")
}

// parseAssignment reads "t:0,1;u:2" ("" = empty).
func (e *scriptEnv) parseAssignment(s string) Assignment {
	a := Assignment{}
	if s == "" {
		return a
	}
	for _, tp := range strings.Split(s, ";") {
		name, ps, _ := strings.Cut(tp, ":")
		for _, p := range strings.Split(ps, ",") {
			n, err := strconv.Atoi(p)
			if err != nil {
				panic(err)
			}
			a.add(topicPartition{topicID(name), int32(n)})
		}
	}
	return a
}

func (e *scriptEnv) consumerClient(name string) *consumerClient {
	if e.consumers == nil {
		e.consumers = map[string]*consumerClient{}
	}
	cl := e.consumers[name]
	if cl == nil {
		cl = &consumerClient{}
		e.consumers[name] = cl
	}
	return cl
}

// runConsumer runs the consumer-group commands; false if cmd is not one.
func (e *scriptEnv) runConsumer(cmd string, a args, out *strings.Builder) bool {
	ctx := context.Background()
	g := a.kv["g"]
	switch cmd {
	case "topics":
		var list []TopicInfo
		for _, p := range a.pos {
			name, n, _ := strings.Cut(p, ":")
			parts, err := strconv.Atoi(n)
			if err != nil {
				panic(err)
			}
			list = append(list, TopicInfo{Name: name, ID: topicID(name), Partitions: int32(parts)})
		}
		e.topics = NewTopics(list)
		out.WriteString("ok\n")
	case "hb":
		name := a.pos[0]
		cl := e.consumerClient(name)
		req := ConsumerHeartbeat{
			Group: g, MemberID: name, MemberEpoch: int32(a.int("epoch", int(cl.epoch))),
			RebalanceTimeout: a.dur("r", cmp.Or(cl.rebalance, 30*time.Second)), ClientID: name, ClientHost: "/127.0.0.1",
			Owned: cl.owned, OwnedSent: true,
		}
		if i, ok := a.kv["i"]; ok {
			req.InstanceID = &i
		}
		if sub, ok := a.kv["sub"]; ok {
			req.SubscribedTopics = strings.Split(sub, ",")
		}
		if re, ok := a.kv["regex"]; ok {
			req.SubscribedRegex = &re
		}
		if as, ok := a.kv["assignor"]; ok {
			req.ServerAssignor = &as
		}
		if req.MemberEpoch == 0 {
			req.Owned = Assignment{}
			if req.SubscribedTopics == nil && req.SubscribedRegex == nil {
				req.SubscribedTopics = []string{}
			}
		}
		if o, ok := a.kv["owned"]; ok {
			if o == "none" {
				req.Owned, req.OwnedSent = nil, false
			} else {
				req.Owned = e.parseAssignment(o)
			}
		}
		if a.has("keep") { // a keepalive: nothing but the ids and epoch
			req.RebalanceTimeout, req.Owned, req.OwnedSent = -1, nil, false
		}
		if req.RebalanceTimeout >= 0 {
			cl.rebalance = req.RebalanceTimeout
		}
		res, err := e.c.ConsumerGroupHeartbeat(ctx, req, e.topics)
		if err != nil {
			fmt.Fprintf(out, "%s: %s\n", name, errName(err))
			if req.MemberEpoch <= 0 {
				break
			}
			break
		}
		cl.epoch = res.MemberEpoch
		fmt.Fprintf(out, "%s: epoch=%d", name, res.MemberEpoch)
		if res.Assignment != nil {
			cl.owned = res.Assignment
			fmt.Fprintf(out, " assigned=%s", e.formatAssignment(res.Assignment))
		}
		out.WriteString("\n")
		if res.MemberEpoch < 0 {
			cl.epoch, cl.owned = 0, nil
		}
	case "cdescribe":
		for _, id := range a.pos {
			d, err := e.c.DescribeConsumerGroup(id)
			if err != nil {
				fmt.Fprintf(out, "%s: %s\n", id, errName(err))
				continue
			}
			fmt.Fprintf(out, "%s %s epoch=%d assignment-epoch=%d assignor=%s\n", d.Group, d.State, d.Epoch, d.AssignmentEpoch, d.Assignor)
			e.c.mu.Lock()
			cg := e.c.groups[id].consumer
			for _, m := range cg.sortedMembers() {
				states := [...]string{"stable", "unrevoked", "unreleased"}
				fmt.Fprintf(out, "  %s epoch=%d %s assigned=%s", m.id, m.epoch, states[m.state], e.formatAssignment(m.assigned))
				if m.revoking.count() > 0 {
					fmt.Fprintf(out, " revoking=%s", e.formatAssignment(m.revoking))
				}
				fmt.Fprintf(out, " target=%s", e.formatAssignment(m.target))
				if m.instanceID != "" {
					fmt.Fprintf(out, " instance=%s", m.instanceID)
				}
				out.WriteString("\n")
			}
			e.c.mu.Unlock()
		}
	case "ccommit":
		name := a.pos[0]
		cl := e.consumerClient(name)
		req := CommitRequest{Group: g, MemberID: name, Generation: int32(a.int("epoch", int(cl.epoch))), KnowsMemberEpochs: a.int("v", 9) >= 9}
		if name == "-" {
			req.MemberID, req.Generation = "", -1
		}
		for _, p := range a.pos[1:] {
			tp, off, _ := strings.Cut(p, "=")
			topic, part, _ := strings.Cut(tp, "/")
			pn, _ := strconv.Atoi(part)
			o, _ := strconv.ParseInt(off, 10, 64)
			req.Offsets = append(req.Offsets, OffsetCommit{Topic: topic, Partition: int32(pn), Offset: o, LeaderEpoch: -1})
		}
		errs, err := e.c.CommitOffsets(ctx, req)
		fmt.Fprintf(out, "commit %s", errName(err))
		for _, err := range errs {
			fmt.Fprintf(out, " %s", errName(err))
		}
		out.WriteString("\n")
	case "cfetch":
		name := a.pos[0]
		cl := e.consumerClient(name)
		err := e.c.CheckMemberEpoch(g, name, int32(a.int("epoch", int(cl.epoch))))
		fmt.Fprintf(out, "fetch %s\n", errName(err))
	default:
		return false
	}
	return true
}
