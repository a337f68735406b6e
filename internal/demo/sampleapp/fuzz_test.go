package sampleapp_test

import (
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/demo/sampleapp"
)

// FuzzParseOrder feeds hostile bodies to the checkout and sign-in parser: it
// must never panic, and what it accepts must hold its bounds.
func FuzzParseOrder(f *testing.F) {
	f.Add([]byte(`{"email":"alice@example.com","items":["lamp-01","oil-04"],"coupon":"SUMMER24"}`), true)
	f.Add([]byte(`{"email":"bob@example.org"}`), false)
	f.Add([]byte(`{"email":"x@y","items":[`+strings.Repeat(`"lamp-01",`, 30)+`"lamp-01"]}`), true)
	f.Add([]byte(`{"email":1}`), false)
	f.Add([]byte(strings.Repeat("[", 5000)), true)
	f.Fuzz(func(t *testing.T, body []byte, needItems bool) {
		o, err := sampleapp.ParseOrder(body, needItems)
		if err != nil {
			return
		}
		if len(body) > 4<<10 || !strings.Contains(o.Email, "@") || len(o.Email) > 254 || len(o.Coupon) > 32 || len(o.Items) > 20 {
			t.Fatalf("accepted an order out of bounds: %+v", o)
		}
		if needItems && len(o.Items) == 0 {
			t.Fatalf("accepted a checkout without items: %+v", o)
		}
	})
}
