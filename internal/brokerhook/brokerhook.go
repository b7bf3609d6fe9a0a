// Package brokerhook carries the broker options that idem's own tests need
// but the public API must not show: their types are internal, so a user
// outside the module could not call them anyway (logstore.FS cannot be
// named outside the module). Package broker fills the hooks in when it is
// initialised; tests reach them through testkit/brokerkit, which gives them
// their real types.
//
// The hooks return any because this package cannot import broker (broker
// imports it) to name broker.Option.
package brokerhook

import "github.com/idem-dev/idem/internal/logstore"

// WithFS returns a broker.Option that replaces the broker's file system
// (the operating system's by default), e.g. with a logstore.MemFS that can
// simulate a power loss. Set by package broker.
var WithFS func(fsys logstore.FS) any
