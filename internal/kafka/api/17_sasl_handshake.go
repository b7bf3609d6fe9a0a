package api

// SaslHandshake (key 17), versions 0–1.
//
// Behaviour: on a listener with SASL the client names a mechanism; the
// answer always lists the enabled mechanisms (kafkajs refuses an answer
// without its own, even on success). An unknown or disabled mechanism is
// UNSUPPORTED_SASL_MECHANISM and the connection is closed, as is a
// handshake in the wrong state (ILLEGAL_SASL_STATE): a second one before
// the exchange ended, or one after authentication when re-authentication
// (connections.max.reauth.ms) is off. On a listener without SASL the
// answer is ILLEGAL_SASL_STATE and the connection stays open, as Kafka's.
//
// Version notes: after v0 the tokens travel as bare size-prefixed frames
// (internal/kafka/auth.go reads them); after v1 in SaslAuthenticate.
// Re-authentication (KIP-368) needs v1 and the same mechanism.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(17, 0, 1, handleSaslHandshake) }

func handleSaslHandshake(_ context.Context, _ *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLHandshakeRequest)
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	s := conn.SASL
	if s == nil {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.SupportedMechanisms = []string{}
		return resp, nil
	}
	resp.SupportedMechanisms = s.Auth.Mechanisms()
	fail := func(code int16) (kmsg.Response, error) {
		resp.ErrorCode = code
		conn.CloseAfterResponse = true
		return resp, nil
	}
	switch {
	case s.Exchange != nil:
		return fail(kerr.IllegalSaslState.Code)
	case s.Authenticated && (s.ReauthAfter <= 0 || req.Version == 0 || req.Mechanism != s.Mechanism):
		return fail(kerr.IllegalSaslState.Code)
	}
	ex, err := s.Auth.Start(req.Mechanism)
	if err != nil {
		return fail(kerr.UnsupportedSaslMechanism.Code)
	}
	s.Exchange, s.Mechanism = ex, req.Mechanism
	s.RawTokens = req.Version == 0
	return resp, nil
}
