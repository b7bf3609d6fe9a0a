package kafka

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The per-connection authentication state machine. A listener with SASL
// serves, before authentication, only ApiVersions (18), SaslHandshake (17)
// and SaslAuthenticate (36); their handlers (internal/kafka/api) move the
// state (api.SASLState) and this file enforces it before every other
// request:
//
//	new ──17──▶ handshaken ──36 (or a bare v0 token)…──▶ authenticated
//	                │ failure: SASL_AUTHENTICATION_FAILED, close   │
//	                ▼                                              │ 17 again before
//	              closed ◀── any other request before auth,        ▼ the session ends
//	                         or after the session expired ◀── re-authenticating (KIP-368)
//
// Frames before authentication are capped at sasl.server.max.receive.size
// (Kafka's 512 KiB): an unauthenticated client cannot make the broker
// allocate large buffers (CVE-2022-34917).

// maxPreAuthFrame caps frames before authentication.
const maxPreAuthFrame = 512 << 10

// errBeforeAuth closes a connection that sends a request it may not send
// in its authentication state.
var errBeforeAuth = errors.New("kafka: request not allowed in this SASL state")

// errClosedAfterResponse ends the reader after a response that closes the
// connection (a failed authentication); it is not a protocol error.
var errClosedAfterResponse = errors.New("kafka: closing after the response, as the handler asked")

// admitRequest checks that key may be sent now.
func (c *conn) admitRequest(key int16) error {
	s := c.info.SASL
	if s == nil {
		return nil
	}
	switch key {
	case 17, 18, 36:
		return nil
	}
	if !s.Authenticated {
		return fmt.Errorf("%w: %s before SASL authentication", errBeforeAuth, kmsg.NameForKey(key))
	}
	if s.Exchange != nil {
		return fmt.Errorf("%w: %s during re-authentication", errBeforeAuth, kmsg.NameForKey(key))
	}
	if !s.Expiry.IsZero() && time.Now().After(s.Expiry) {
		return fmt.Errorf("%w: %s after the SASL session expired at %s (the client did not re-authenticate)", errBeforeAuth, kmsg.NameForKey(key), s.Expiry.Format(time.RFC3339))
	}
	return nil
}

// frameLimit is the largest frame accepted now.
func (c *conn) frameLimit() int32 {
	if s := c.info.SASL; s != nil && !s.Authenticated {
		return min(c.s.cfg.MaxRequestBytes, maxPreAuthFrame)
	}
	return c.s.cfg.MaxRequestBytes
}

// rawToken reads one bare SASL token (after a v0 SaslHandshake, tokens
// travel without a Kafka header), steps the exchange and returns the bare
// answer to queue. A failure closes the connection: v0 has no way to say
// why.
func (c *conn) rawToken(br *bufio.Reader) (*pending, error) {
	var sizeBuf [4]byte
	if _, err := io.ReadFull(br, sizeBuf[:]); err != nil {
		return nil, err
	}
	size := int32(binary.BigEndian.Uint32(sizeBuf[:]))
	if size < 0 || size > maxPreAuthFrame {
		return nil, fmt.Errorf("%w: SASL token of %d bytes", errFrame, size)
	}
	token := make([]byte, size)
	if _, err := io.ReadFull(br, token); err != nil {
		return nil, fmt.Errorf("%w: SASL token cut short: %v", errFrame, err)
	}
	s := c.info.SASL
	out, done, err := s.Exchange.Step(token)
	if err != nil {
		return nil, fmt.Errorf("SASL %s (v0 handshake) failed: %w", s.Mechanism, err)
	}
	if done {
		if _, err := c.info.CompleteSASL(time.Now()); err != nil {
			return nil, err
		}
	}
	return &pending{bare: true, raw: out, start: time.Now()}, nil
}
