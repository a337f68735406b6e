package tlsconfig_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/testenv"
	"github.com/periscope-dev/periscope/internal/tlsconfig"
	"github.com/periscope-dev/periscope/internal/tlsconfig/tlstest"
)

// serve runs an HTTPS server with s's TLS on 127.0.0.1 and returns its URL.
func serve(t *testing.T, s *tlsconfig.Server) string {
	t.Helper()
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(tls.NewListener(ln, s.Config("http/1.1"))) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "https://" + ln.Addr().String()
}

// get makes one request on a new connection with a client configured as the
// agent's is, and returns the serial of the certificate the server showed.
func get(t *testing.T, url string, c config.ClientTLS) (*big.Int, error) {
	t.Helper()
	conf, err := tlsconfig.Client(c)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return resp.TLS.PeerCertificates[0].SerialNumber, nil
}

// TestRenewedCertificateIsServedWithoutRestart renews the server's certificate
// in place, as certbot or cert-manager does: the next connection gets the new
// one. Renewed files that do not load (a key for another certificate) are
// logged once and the last good certificate goes on being served.
func TestRenewedCertificateIsServedWithoutRestart(t *testing.T) {
	ca := tlstest.NewCA(t, "private CA")
	dir := t.TempDir()
	first := ca.Server(t, dir)
	var logged testenv.Buffer
	s := tlsconfig.NewServer(config.ServerTLS{CertFile: first.CertFile, KeyFile: first.KeyFile, MinVersion: "1.2"},
		slog.New(slog.NewTextHandler(&logged, nil)))
	url := serve(t, s)
	trust := config.ClientTLS{CAFile: ca.File}

	if got, err := get(t, url, trust); err != nil || got.Cmp(first.Serial) != 0 {
		t.Fatalf("before renewal: certificate %v, %v; want serial %v", got, err, first.Serial)
	}
	renewed := ca.Server(t, dir)
	if got, err := get(t, url, trust); err != nil || got.Cmp(renewed.Serial) != 0 {
		t.Fatalf("after renewal: certificate %v, %v; want the renewed serial %v", got, err, renewed.Serial)
	}
	if !strings.Contains(logged.String(), "TLS certificate reloaded") {
		t.Errorf("the renewal is not logged:\n%s", logged.String())
	}

	other := ca.Client(t, t.TempDir(), "someone")
	key, err := os.ReadFile(other.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(renewed.KeyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got, err := get(t, url, trust); err != nil || got.Cmp(renewed.Serial) != 0 {
			t.Fatalf("with a mismatched key: certificate %v, %v; want the last good serial %v", got, err, renewed.Serial)
		}
	}
	if n := strings.Count(logged.String(), "do not load"); n != 1 {
		t.Errorf("the broken renewal is logged %d times, want once:\n%s", n, logged.String())
	}
}

// TestAnotherCAIsRefused checks the client side: a server whose certificate
// another CA signed is refused, and saying why; the right CA, a server name
// the certificate carries, or skipping verification get through.
func TestAnotherCAIsRefused(t *testing.T) {
	ca := tlstest.NewCA(t, "private CA")
	p := ca.Server(t, t.TempDir(), "manager.internal")
	url := serve(t, tlsconfig.NewServer(config.ServerTLS{CertFile: p.CertFile, KeyFile: p.KeyFile, MinVersion: "1.2"}, nil))

	stranger := tlstest.NewCA(t, "someone else's CA")
	_, err := get(t, url, config.ClientTLS{CAFile: stranger.File})
	var unknown x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &unknown) || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("with another CA: %v, want certificate signed by unknown authority", err)
	}
	if _, err := get(t, url, config.ClientTLS{}); err == nil {
		t.Error("the system's CAs trusted a private CA's certificate")
	}
	for _, c := range []config.ClientTLS{{CAFile: ca.File}, {CAFile: ca.File, ServerName: "manager.internal"}, {InsecureSkipVerify: true}} {
		if _, err := get(t, url, c); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	if _, err := get(t, url, config.ClientTLS{CAFile: ca.File, ServerName: "elsewhere.internal"}); err == nil ||
		!strings.Contains(err.Error(), "elsewhere.internal") {
		t.Errorf("a server name the certificate does not carry: %v, want refused naming it", err)
	}
}

// TestClientCertificatesAreRequired serves mutual TLS: a client without a
// certificate, or with one another CA signed, is refused; one the client CA
// signed gets through.
func TestClientCertificatesAreRequired(t *testing.T) {
	ca := tlstest.NewCA(t, "private CA")
	clients := tlstest.NewCA(t, "agents' CA")
	p := ca.Server(t, t.TempDir())
	url := serve(t, tlsconfig.NewServer(config.ServerTLS{CertFile: p.CertFile, KeyFile: p.KeyFile, ClientCAFile: clients.File, MinVersion: "1.3"}, nil))

	good := clients.Client(t, t.TempDir(), "acme-prod")
	bad := tlstest.NewCA(t, "elsewhere").Client(t, t.TempDir(), "intruder")
	if _, err := get(t, url, config.ClientTLS{CAFile: ca.File}); err == nil {
		t.Error("a client without a certificate got through")
	}
	if _, err := get(t, url, config.ClientTLS{CAFile: ca.File, CertFile: bad.CertFile, KeyFile: bad.KeyFile}); err == nil {
		t.Error("a client certificate of another CA got through")
	}
	if _, err := get(t, url, config.ClientTLS{CAFile: ca.File, CertFile: good.CertFile, KeyFile: good.KeyFile}); err != nil {
		t.Errorf("the client CA's certificate: %v", err)
	}
}

// TestBrokenFilesAreStartupErrors: Load names the setting and the file.
func TestBrokenFilesAreStartupErrors(t *testing.T) {
	ca := tlstest.NewCA(t, "private CA")
	p := ca.Server(t, t.TempDir())
	for _, c := range []struct {
		name string
		cfg  config.ServerTLS
		want string
	}{
		{"missing", config.ServerTLS{CertFile: "/nonexistent/cert.pem", KeyFile: p.KeyFile}, "/nonexistent/cert.pem: no such file"},
		{"swapped", config.ServerTLS{CertFile: p.KeyFile, KeyFile: p.CertFile}, "tls: cert_file and key_file:"},
		{"CA not PEM", config.ServerTLS{CertFile: p.CertFile, KeyFile: p.KeyFile, ClientCAFile: p.KeyFile}, "tls: client_ca_file: no PEM certificates in " + p.KeyFile},
	} {
		if err := tlsconfig.NewServer(c.cfg, nil).Load(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := tlsconfig.Client(config.ClientTLS{CAFile: p.KeyFile}); err == nil || !strings.Contains(err.Error(), "tls: ca_file: no PEM certificates") {
		t.Errorf("a CA file with no certificate: %v", err)
	}
}
