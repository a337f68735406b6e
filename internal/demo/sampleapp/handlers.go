package sampleapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// maxBody bounds a request body the service reads.
const maxBody = 4 << 10

// SessionHeader carries the shopper's session id (a cookie in a real shop).
const SessionHeader = "X-Session-Id"

// products is the shop's catalogue.
var products = []product{
	{"lamp-01", "Brass storm lantern", 4900}, {"lens-02", "Fresnel lens, 30 cm", 12900},
	{"log-03", "Keeper's logbook", 1850}, {"oil-04", "Lamp oil, 1 l", 750},
}

type product struct {
	SKU   string `json:"sku"`
	Name  string `json:"name"`
	Cents int    `json:"price_cents"`
}

// Order is what a shopper sends to /checkout and /login (email only).
type Order struct {
	Email  string   `json:"email"`
	Coupon string   `json:"coupon,omitempty"`
	Items  []string `json:"items"`
}

// maxItems bounds an order's items.
const maxItems = 20

// ParseOrder decodes and checks a checkout or login body: JSON, at most
// maxBody bytes, an e-mail of at most 254 bytes, at most maxItems known SKUs.
func ParseOrder(body []byte, needItems bool) (Order, error) {
	var o Order
	if len(body) > maxBody {
		return o, errors.New("body too large")
	}
	if err := json.Unmarshal(body, &o); err != nil {
		return o, fmt.Errorf("malformed order: %w", err)
	}
	if o.Email == "" || len(o.Email) > 254 || !strings.Contains(o.Email, "@") {
		return o, errors.New("an e-mail address is required")
	}
	if len(o.Coupon) > 32 {
		return o, errors.New("coupon too long")
	}
	// The bound holds for every body, not only a checkout's: a sign-in that
	// carries items still has each one looked up below.
	if len(o.Items) > maxItems || (needItems && len(o.Items) == 0) {
		return o, fmt.Errorf("an order has 1 to %d items", maxItems)
	}
	for _, sku := range o.Items {
		if _, ok := priceOf(sku); !ok {
			return o, fmt.Errorf("unknown item %.40q", sku)
		}
	}
	return o, nil
}

func priceOf(sku string) (int, bool) {
	for _, p := range products {
		if p.SKU == sku {
			return p.Cents, true
		}
	}
	return 0, false
}

// request is what a handler knows of the request it serves.
type request struct {
	r       *http.Request
	client  string
	session string
}

// handler serves one route and returns the status and what to send.
type handler func(ctx context.Context, q request) (int, any)

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /products", a.serve("/products", a.listProducts))
	mux.Handle("GET /cart", a.serve("/cart", a.showCart))
	mux.Handle("POST /login", a.serve("/login", a.login))
	mux.Handle("POST /checkout", a.serve("/checkout", a.checkout))
	return mux
}

// serve wraps a route in its server span, its duration metric and a JSON
// answer.
func (a *App) serve(route string, h handler) http.Handler {
	tel := a.tel
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := a.cfg.Clock.Now()
		ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		q := request{r: r, client: clientAddress(r), session: r.Header.Get(SessionHeader)}
		if len(q.session) > 64 {
			q.session = q.session[:64]
		}
		ctx, span := tel.tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route),
				attribute.String("url.path", r.URL.Path), attribute.String("client.address", q.client)))
		status, body := h(ctx, q)
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
		end := a.cfg.Clock.Now()
		span.End(trace.WithTimestamp(end))
		tel.duration.Record(ctx, end.Sub(start).Seconds(), metric.WithAttributes(attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route), attribute.Int("http.response.status_code", status)))
	})
}

// clientAddress is the shopper's address: the first X-Forwarded-For hop the
// ingress proxy passes on, else the peer.
func clientAddress(r *http.Request) string {
	if f := r.Header.Get("X-Forwarded-For"); f != "" {
		first, _, _ := strings.Cut(f, ",")
		if ip := net.ParseIP(strings.TrimSpace(first)); ip != nil {
			return ip.String()
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return host
}

// failed is a function's failure under its release's fault.
type failed struct{ text string }

func (f *failed) Error() string { return f.text }

// step runs one named function as a child span: the release's fault adds its
// latency and fails the share of calls it says, with its log text; work, if
// any, runs when the call has not failed.
func (a *App) step(ctx context.Context, fn string, work func(ctx context.Context) error) error {
	ctx, span := a.tel.tracer.Start(ctx, fn, trace.WithTimestamp(a.cfg.Clock.Now()),
		trace.WithAttributes(attribute.String("code.function.name", fn)))
	var err error
	if f, faulty, fail := a.fails(fn); faulty {
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if fail {
			err = &failed{text: f.LogText}
		}
	}
	if err == nil && work != nil {
		err = work(ctx)
	}
	if err != nil {
		span.RecordError(err, trace.WithTimestamp(a.cfg.Clock.Now()))
		span.SetStatus(codes.Error, err.Error())
		a.log(ctx, otellog.SeverityError, fn, fn+" failed: "+err.Error())
	}
	span.End(trace.WithTimestamp(a.cfg.Clock.Now()))
	return err
}

// log emits one record through the SDK's logger, in the span's context so it
// carries the trace and span ids.
func (a *App) log(ctx context.Context, sev otellog.Severity, fn, msg string, kvs ...attribute.KeyValue) {
	var rec otellog.Record
	now := a.cfg.Clock.Now()
	rec.SetTimestamp(now)
	rec.SetObservedTimestamp(now)
	rec.SetSeverity(sev)
	rec.SetSeverityText(strings.ToUpper(sev.String()))
	rec.SetBody(attribute.StringValue(msg))
	rec.AddAttributes(attribute.String("code.function.name", fn))
	rec.AddAttributes(kvs...)
	a.tel.logger.Emit(ctx, rec)
}

// readOrder reads and checks a bounded body.
func readOrder(r *http.Request, needItems bool) (Order, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return Order{}, fmt.Errorf("read body: %w", err)
	}
	return ParseOrder(body, needItems)
}

func errorBody(err error) map[string]string { return map[string]string{"error": err.Error()} }

func (a *App) listProducts(ctx context.Context, _ request) (int, any) {
	if err := a.step(ctx, FnCatalogList, nil); err != nil {
		return http.StatusInternalServerError, errorBody(err)
	}
	return http.StatusOK, products
}

func (a *App) showCart(ctx context.Context, q request) (int, any) {
	if err := a.step(ctx, FnCartLoad, nil); err != nil {
		return http.StatusInternalServerError, errorBody(err)
	}
	if err := a.step(ctx, FnApplyDiscount, nil); err != nil {
		return http.StatusInternalServerError, errorBody(err)
	}
	return http.StatusOK, map[string]any{"session": q.session, "items": []string{products[0].SKU}}
}

func (a *App) login(ctx context.Context, q request) (int, any) {
	o, err := readOrder(q.r, false)
	if err != nil {
		return http.StatusBadRequest, errorBody(err)
	}
	if err := a.step(ctx, FnVerifyPassword, nil); err != nil {
		return http.StatusInternalServerError, errorBody(err)
	}
	// Personal data on purpose: the agent's redaction must remove it.
	a.log(ctx, otellog.SeverityInfo, FnVerifyPassword,
		fmt.Sprintf("shopper %s signed in from %s (session %s)", o.Email, q.client, q.session),
		attribute.String("user.email", o.Email), attribute.String("client.address", q.client), attribute.String("session.id", q.session))
	return http.StatusOK, map[string]string{"session": q.session}
}

func (a *App) checkout(ctx context.Context, q request) (int, any) {
	o, err := readOrder(q.r, true)
	if err != nil {
		return http.StatusBadRequest, errorBody(err)
	}
	orderID := a.newID("o")
	total := 0
	fail := func(err error) (int, any) {
		a.tel.orders.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "failed")))
		return http.StatusInternalServerError, errorBody(err)
	}
	steps := []struct {
		fn   string
		work func(context.Context) error
	}{
		{FnCartLoad, func(context.Context) error {
			for _, sku := range o.Items {
				p, _ := priceOf(sku)
				total += p
			}
			return nil
		}},
		{FnApplyDiscount, func(context.Context) error {
			if o.Coupon != "" {
				total = total * 9 / 10
			}
			return nil
		}},
		{FnInventoryReserve, nil},
		{FnPaymentsCharge, nil},
		{FnInvoiceStore, func(ctx context.Context) error {
			if a.bucket == nil {
				return nil
			}
			return a.bucket.put(ctx, orderID, invoice{Order: orderID, Email: o.Email, Items: o.Items, Cents: total, Release: a.cfg.Release})
		}},
		{FnOrdersPublish, func(ctx context.Context) error {
			if a.queue == nil {
				return nil
			}
			return a.queue.publish(ctx, orderEvent{Order: orderID, Items: len(o.Items), Cents: total})
		}},
	}
	for _, s := range steps {
		if err := a.step(ctx, s.fn, s.work); err != nil {
			return fail(err)
		}
	}
	a.tel.orders.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", "placed")))
	a.log(ctx, otellog.SeverityInfo, FnOrdersPublish,
		fmt.Sprintf("order %s placed by %s from %s: %d items, %s", orderID, o.Email, q.client, len(o.Items), money(total)),
		attribute.String("order.id", orderID), attribute.String("user.email", o.Email), attribute.String("session.id", q.session))
	return http.StatusCreated, map[string]string{"order": orderID, "total": money(total)}
}

func money(cents int) string {
	return strconv.Itoa(cents/100) + "." + fmt.Sprintf("%02d", cents%100) + " EUR"
}
