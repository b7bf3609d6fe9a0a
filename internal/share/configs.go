package share

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/statelog"
)

// Dynamic configs of groups and of the broker live in the share log, beside
// the state they configure: one record per resource holding all its
// values, written before the change is acknowledged and replayed at start
// (broker values are put back into the broker's config.Config then). Why
// here and not in the catalog: the catalog is the topics' file, rewritten
// whole on each change; group configs change as groups come and go, are
// deleted with their group, and the share log already gives durable,
// group-committed, compacted records. Topic configs stay in the catalog.

// Config operations (IncrementalAlterConfigs' numbers).
const (
	OpSet      int8 = 0
	OpDelete   int8 = 1
	OpAppend   int8 = 2
	OpSubtract int8 = 3
)

// ConfigOp is one change of one config.
type ConfigOp struct {
	Name  string
	Value *string
	Op    int8
}

// Configs returns the dynamic configs of a resource (a group by id, or the
// broker: ResourceBroker, "").
func (c *Coordinator) Configs(resType int8, name string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.configs[resourceKey{resType, name}])
}

// AlterConfigs changes a resource's dynamic configs: incremental applies
// ops to what is set, otherwise ops replace everything (AlterConfigs
// semantics: a config not named reverts to its default). Every value is
// validated first; nothing changes if one is refused. It returns after the
// change is durable.
func (c *Coordinator) AlterConfigs(ctx context.Context, resType int8, name string, ops []ConfigOp, incremental, validateOnly bool) error {
	c.mu.Lock()
	key := resourceKey{resType, name}
	next := map[string]string{}
	if incremental {
		next = maps.Clone(c.configs[key])
		if next == nil {
			next = map[string]string{}
		}
	}
	seen := map[string]bool{}
	for _, op := range ops {
		if seen[op.Name] {
			c.mu.Unlock()
			return fmt.Errorf("%w: %s is named twice", ErrInvalidRequest, op.Name)
		}
		seen[op.Name] = true
		switch op.Op {
		case OpSet:
			if op.Value == nil {
				c.mu.Unlock()
				return fmt.Errorf("%w: %s: null value", ErrInvalidConfig, op.Name)
			}
			if err := c.validateConfigLocked(resType, op.Name, *op.Value); err != nil {
				c.mu.Unlock()
				return err
			}
			next[op.Name] = *op.Value
		case OpDelete:
			if err := c.knownConfig(resType, op.Name); err != nil {
				c.mu.Unlock()
				return err
			}
			delete(next, op.Name)
		case OpAppend, OpSubtract:
			c.mu.Unlock()
			return fmt.Errorf("%w: %s is not a list; APPEND and SUBTRACT apply only to lists", ErrInvalidConfig, op.Name)
		default:
			c.mu.Unlock()
			return fmt.Errorf("%w: config operation %d", ErrInvalidRequest, op.Op)
		}
	}
	if validateOnly {
		c.mu.Unlock()
		return nil
	}
	if len(next) == 0 {
		next = nil
	}
	end, err := c.appendLocked([]statelog.Record{configRecord(resType, name, next)})
	if err != nil {
		c.mu.Unlock()
		return err
	}
	if next == nil {
		delete(c.configs, key)
	} else {
		c.configs[key] = next
	}
	if resType == ResourceBroker {
		c.applyBrokerLocked(next)
	}
	c.mu.Unlock()
	return c.waitDurable(ctx, end)
}

// applyBrokerLocked makes the broker's dynamic values exactly kv.
func (c *Coordinator) applyBrokerLocked(kv map[string]string) {
	for k := range c.cfg.Broker.Dynamic() {
		if _, ok := kv[k]; !ok {
			c.cfg.Broker.SetDynamic(k, nil)
		}
	}
	for k, v := range kv {
		if err := c.cfg.Broker.SetDynamic(k, &v); err != nil {
			c.logger.Warn("dynamic broker config not applied", "name", k, "err", err)
		}
	}
}

func (c *Coordinator) validateConfigLocked(resType int8, name, value string) error {
	var err error
	switch resType {
	case ResourceGroup:
		err = c.cfg.Broker.ValidateGroup(name, value)
		if err == nil && name == "errors.deadletterqueue.topic.name" && value != "" {
			err = c.checkDLQTarget(value)
		}
	case ResourceBroker:
		err = c.cfg.Broker.ValidateDynamic(name, value)
	default:
		return fmt.Errorf("%w: resource type %d", ErrInvalidRequest, resType)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

func (c *Coordinator) knownConfig(resType int8, name string) error {
	switch resType {
	case ResourceGroup:
		if err := c.cfg.Broker.ValidateGroup(name, "x"); err != nil && isUnknown(err) {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	case ResourceBroker:
		if err := c.cfg.Broker.ValidateDynamic(name, "x"); err != nil && isUnknown(err) {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	return nil
}

func isUnknown(err error) bool { return errors.Is(err, config.ErrUnknown) }

// checkDLQTarget is KIP-1191's check when a group names its dead-letter
// topic: an existing topic must have opted in, a missing one must be
// auto-creatable. (The dead-letter writer checks again when it writes: the
// topic may change in between, and then the records wait.)
func (c *Coordinator) checkDLQTarget(name string) error {
	if ti, ok := c.cfg.Topics.ByName(name); ok {
		if ti.Configs["errors.deadletterqueue.group.enable"] != "true" {
			return fmt.Errorf("topic %q exists but does not have errors.deadletterqueue.group.enable=true", name)
		}
		return nil
	}
	if !c.cfg.Broker.Bool("errors.deadletterqueue.auto.create.topics.enable") {
		return fmt.Errorf("topic %q does not exist and errors.deadletterqueue.auto.create.topics.enable is false", name)
	}
	return nil
}
