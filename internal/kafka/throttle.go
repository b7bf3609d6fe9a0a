package kafka

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/kafka/api"
	"github.com/idem-dev/idem/internal/security"
)

// Client quotas, enforced as Kafka does since KIP-219: the response goes
// out at once carrying ThrottleMillis, and the broker then stops reading
// from the connection (mutes it) for that long, so a client that ignores
// the hint is slowed all the same. Produce is measured by request bytes
// (producer_byte_rate), Fetch by response bytes (consumer_byte_rate), and
// every request by its handling time (request_percentage, in percent of
// one handler for a second per second).

// maxThrottle bounds one mute, as Kafka bounds throttle times by the
// quota window.
const maxThrottle = 30 * time.Second

// quotaUser is the user part of the quota entity: the principal's name.
func (c *conn) quotaUser() string {
	return strings.TrimPrefix(c.info.Principal, "User:")
}

// throttleRequest records a handled request against the quotas and, when
// one is exceeded, sets the response's ThrottleMillis and mutes the reader.
func (c *conn) throttleRequest(key int16, frameBytes int, took time.Duration, resp kmsg.Response) {
	t := c.s.cfg.Throttler
	if t == nil || resp == nil {
		return
	}
	switch key {
	case 17, 18, 36:
		return // authentication is never throttled
	}
	user, client := c.quotaUser(), c.info.ClientID
	delay := t.Record(user, client, security.QuotaRequestPercentage, took.Seconds()*100)
	if key == 0 {
		delay = max(delay, t.Record(user, client, security.QuotaProducerByteRate, float64(frameBytes)))
	}
	if delay <= 0 {
		return
	}
	delay = min(delay, maxThrottle)
	inner := resp
	if d, ok := resp.(*api.Deferred); ok {
		inner = d.Response
	}
	if tr, ok := inner.(interface{ SetThrottle(int32) }); ok {
		tr.SetThrottle(int32(delay / time.Millisecond))
	}
	c.mute(delay)
}

// throttleFetch records an encoded Fetch response's size against
// consumer_byte_rate and, when over, writes ThrottleMillis into the
// encoded frame (its first field after the header, v1+) and mutes.
func (c *conn) throttleFetch(frame []byte, p *pending) {
	t := c.s.cfg.Throttler
	if t == nil {
		return
	}
	delay := t.Record(p.user, p.clientID, security.QuotaConsumerByteRate, float64(len(frame)))
	if delay <= 0 {
		return
	}
	delay = min(delay, maxThrottle)
	at := 8 // size, correlation id
	if p.version >= 12 {
		at++ // flexible: the header's empty tag section
	}
	if p.version >= 1 && len(frame) >= at+4 {
		binary.BigEndian.PutUint32(frame[at:], uint32(delay/time.Millisecond))
	}
	c.mute(delay)
}

// mute stops the reader until now+d (or later, if already muted longer).
func (c *conn) mute(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := c.mutedUntil.Load()
		if cur >= until || c.mutedUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// waitMuted blocks the reader while the connection is muted.
func (c *conn) waitMuted() error {
	until := c.mutedUntil.Load()
	if until == 0 {
		return nil
	}
	d := time.Until(time.Unix(0, until))
	if d <= 0 {
		return nil
	}
	c.s.cfg.Metrics.throttled()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-c.ctx.Done():
		return c.ctx.Err()
	case <-c.s.closed:
		return nil // shutting down: the reader stops at the next frame
	}
}
