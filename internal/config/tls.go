package config

import (
	"errors"
	"fmt"
)

// ServerTLS is the manager's own TLS: one certificate for every listener,
// reread when its files change, so a renewed certificate is served without a
// restart.
type ServerTLS struct {
	// CertFile and KeyFile are the PEM certificate chain and private key the
	// manager presents; both unset serves plain HTTP.
	CertFile string `yaml:"cert_file" env:"CERT_FILE"`
	KeyFile  string `yaml:"key_file" env:"KEY_FILE"`
	// ClientCAFile, when set, is a PEM file of the CAs whose client
	// certificates the manager requires (mutual TLS): agents, the CLI and
	// browsers must then all present one.
	ClientCAFile string `yaml:"client_ca_file" env:"CLIENT_CA_FILE"`
	// MinVersion is the oldest TLS version accepted: 1.2 (the default) or 1.3.
	MinVersion string `yaml:"min_version" env:"MIN_VERSION"`
}

// Enabled reports whether the manager serves TLS.
func (t ServerTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

func (t ServerTLS) validate(field string) error {
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: cert_file and key_file go together: set both to serve TLS, or neither for plain HTTP", field))
	}
	if t.ClientCAFile != "" && !t.Enabled() {
		errs = append(errs, fmt.Errorf("%s.client_ca_file: asking clients for certificates needs TLS: set cert_file and key_file too", field))
	}
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		errs = append(errs, fmt.Errorf("%s.min_version: %q must be 1.2 or 1.3 (older versions are broken)", field, t.MinVersion))
	}
	return errors.Join(errs...)
}

// ClientTLS is how a client trusts a server over TLS and, when the server asks,
// proves who it is.
type ClientTLS struct {
	// CAFile is a PEM file of the CAs to trust instead of the system's, such as
	// a private CA that signed the manager's certificate.
	CAFile string `yaml:"ca_file" env:"CA_FILE"`
	// ServerName is the name the server's certificate must carry, when it is
	// not the URL's host (an IP address, say).
	ServerName string `yaml:"server_name" env:"SERVER_NAME"`
	// InsecureSkipVerify accepts any certificate: the connection is encrypted
	// but anyone in the path can read it. For a first test only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify" env:"INSECURE_SKIP_VERIFY"`
	// CertFile and KeyFile are a PEM client certificate and key, for a server
	// that requires them (mutual TLS).
	CertFile string `yaml:"cert_file" env:"CERT_FILE"`
	KeyFile  string `yaml:"key_file" env:"KEY_FILE"`
}

// set reports whether any setting is given.
func (t ClientTLS) set() bool { return t != ClientTLS{} }

func (t ClientTLS) validate(field string, https bool) error {
	var errs []error
	if t.set() && !https {
		errs = append(errs, fmt.Errorf("%s: the manager's URL is http://, so no TLS would be used: make it https:// or remove %s", field, field))
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s: cert_file and key_file go together: set both for a client certificate, or neither", field))
	}
	if t.InsecureSkipVerify && (t.CAFile != "" || t.ServerName != "") {
		errs = append(errs, fmt.Errorf("%s.insecure_skip_verify: no certificate is checked, so ca_file and server_name would be ignored: remove one or the other", field))
	}
	return errors.Join(errs...)
}
