package idempotency_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/idem-dev/idem/idempotency"
)

// FingerprintJSON treats two spellings of one JSON body as the same
// request; DefaultFingerprint compares bytes.
func ExampleFingerprintJSON() {
	a := httptest.NewRequest("POST", "/orders", nil)
	b := httptest.NewRequest("POST", "/orders", nil)
	x, y := []byte(`{"amount":100,"currency":"eur"}`), []byte("{ \"currency\": \"eur\",\n  \"amount\": 100 }")
	fmt.Println(idempotency.FingerprintJSON(a, x) == idempotency.FingerprintJSON(b, y))
	fmt.Println(idempotency.DefaultFingerprint(a, x) == idempotency.DefaultFingerprint(b, y))
	// Output:
	// true
	// false
}
