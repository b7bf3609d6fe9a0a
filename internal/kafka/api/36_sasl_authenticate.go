package api

// SaslAuthenticate (key 36), versions 0–2.
//
// Behaviour: carries one SASL token of the exchange a v1 SaslHandshake
// started and answers the server's token. A failed exchange (wrong
// password, unknown user (indistinguishable), malformed token, expired or
// forged OAuth token, a re-authentication as another principal) answers
// SASL_AUTHENTICATION_FAILED with a message and closes the connection
// (KIP-152; kfake closes without either). Without a handshake first it is
// ILLEGAL_SASL_STATE, and the connection is closed; on a listener without
// SASL it is ILLEGAL_SASL_STATE and the connection stays open.
//
// Version notes: v1 adds SessionLifetimeMillis (KIP-368), set only when
// connections.max.reauth.ms is: the shorter of it and the credential's
// remaining validity; after it the client must re-authenticate on the same
// connection or the broker closes it at its next request. v2 is flexible.

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(36, 0, 2, handleSaslAuthenticate) }

func handleSaslAuthenticate(_ context.Context, env *Env, conn *Conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.SASLAuthenticateRequest)
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	s := conn.SASL
	fail := func(code int16, err error) (kmsg.Response, error) {
		resp.ErrorCode = code
		resp.ErrorMessage = errMessage(err)
		conn.CloseAfterResponse = true
		return resp, nil
	}
	if s == nil {
		// A listener without SASL: answered, not closed (as Kafka's
		// KafkaApis answers it after authentication).
		resp.ErrorCode, resp.ErrorMessage = kerr.IllegalSaslState.Code, errMessage(errIllegalSASLState)
		return resp, nil
	}
	if s.Exchange == nil || s.RawTokens {
		return fail(kerr.IllegalSaslState.Code, errIllegalSASLState)
	}
	out, done, err := s.Exchange.Step(req.SASLAuthBytes)
	if err != nil {
		s.Exchange = nil
		env.Logger.Info("SASL authentication failed", "conn", conn.ID, "remote", conn.RemoteAddr, "mechanism", s.Mechanism, "err", err)
		return fail(kerr.SaslAuthenticationFailed.Code, err)
	}
	resp.SASLAuthBytes = out
	if !done {
		return resp, nil
	}
	lifetime, err := conn.CompleteSASL(time.Now())
	if err != nil {
		return fail(kerr.SaslAuthenticationFailed.Code, err)
	}
	resp.SessionLifetimeMillis = lifetime.Milliseconds()
	return resp, nil
}
