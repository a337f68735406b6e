package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Exporter is one entry of the manager's exporters list.
type Exporter struct {
	// Name identifies the exporter in logs, metrics and errors.
	Name string `yaml:"name"`
	// Type is otlphttp, otlpgrpc, s3 or file.
	Type string `yaml:"type"`

	// Endpoint is the base URL for otlphttp (the signal path, such as /v1/logs, is
	// appended), host:port for otlpgrpc, and an optional URL of an S3-compatible
	// store for s3.
	Endpoint string `yaml:"endpoint"`
	// Headers are sent with every otlphttp request or as otlpgrpc metadata.
	Headers map[string]string `yaml:"headers"`
	// Compression is gzip (the default) or none; otlphttp also accepts zstd.
	Compression string `yaml:"compression"`
	// Timeout bounds one Export call (30s when unset).
	Timeout Duration `yaml:"timeout"`
	// TLS configures the otlphttp and otlpgrpc connections.
	TLS ExporterTLS `yaml:"tls"`

	// Bucket is the s3 bucket to write to.
	Bucket string `yaml:"bucket"`
	// Prefix is prepended to every s3 object key.
	Prefix string `yaml:"prefix"`
	// Region is the s3 bucket's region (AWS_REGION, then us-east-1, when unset).
	Region string `yaml:"region"`
	// AccessKeyID and SecretAccessKey are static s3 credentials; when unset, the
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN variables are used.
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
	// PathStyle addresses the bucket in the URL path rather than the host name, as
	// most S3-compatible stores need.
	PathStyle bool `yaml:"path_style"`
	// Format is otlp_json (the default) or otlp_proto.
	Format string `yaml:"format"`

	// Path is the file exporter's output file.
	Path string `yaml:"path"`
	// MaxSizeMB rotates the file before it grows past this many mebibytes (0: never).
	MaxSizeMB int `yaml:"max_size_mb"`
	// MaxBackups is how many rotated files to keep; it must be at least 1 when
	// MaxSizeMB is set so rotation never silently discards data.
	MaxBackups int `yaml:"max_backups"`
}

// ExporterTLS configures TLS for the OTLP exporters.
type ExporterTLS struct {
	// Insecure makes otlpgrpc connect in plaintext; otlphttp follows the endpoint's scheme.
	Insecure bool `yaml:"insecure"`
	// InsecureSkipVerify accepts any server certificate, for testing only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CAFile is a PEM file of the CAs to trust instead of the system's.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and key for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name the server certificate is checked against.
	ServerName string `yaml:"server_name"`
}

// Validate reports every problem in the configuration, each naming the exporter.
func (c Exporter) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Name == "" {
		bad("name: must be set")
	}
	if c.Timeout < 0 {
		bad("timeout: must not be negative, got %s", time.Duration(c.Timeout))
	}
	switch c.Type {
	case "otlphttp":
		if !isHTTPURL(c.Endpoint) {
			bad("endpoint: %q is not an http(s) URL like https://otlp.example.com:4318", c.Endpoint)
		}
		if !oneOf(c.Compression, "", "gzip", "zstd", "none") {
			bad("compression: %q must be gzip, zstd or none", c.Compression)
		}
		errs = append(errs, c.TLS.validate())
	case "otlpgrpc":
		// A URL would split into host "http" and port "//h"; gRPC wants a bare host:port.
		if _, port, err := net.SplitHostPort(c.Endpoint); err != nil || port == "" || strings.Contains(c.Endpoint, "/") {
			bad("endpoint: %q is not host:port like otlp.example.com:4317", c.Endpoint)
		}
		if !oneOf(c.Compression, "", "gzip", "none") {
			bad("compression: %q must be gzip or none", c.Compression)
		}
		if t := c.TLS; t.Insecure && (t.CAFile != "" || t.CertFile != "" || t.InsecureSkipVerify || t.ServerName != "") {
			bad("tls: insecure turns TLS off, so the other tls settings would be ignored")
		}
		errs = append(errs, c.TLS.validate())
	case "s3":
		if c.Bucket == "" {
			bad("bucket: must be set")
		}
		if c.Endpoint != "" && !isHTTPURL(c.Endpoint) {
			bad("endpoint: %q is not an http(s) URL like https://minio.example.com:9000", c.Endpoint)
		}
		if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
			bad("access_key_id and secret_access_key: set both or neither")
		}
		if !oneOf(c.Format, "", "otlp_json", "otlp_proto") {
			bad("format: %q must be otlp_json or otlp_proto", c.Format)
		}
		if !oneOf(c.Compression, "", "gzip", "none") {
			bad("compression: %q must be gzip or none", c.Compression)
		}
	case "file":
		if c.Path == "" {
			bad("path: must be set")
		}
		if c.Compression != "" {
			bad("compression: the file exporter writes uncompressed JSON lines, remove %q", c.Compression)
		}
		if c.MaxSizeMB < 0 {
			bad("max_size_mb: must not be negative, got %d", c.MaxSizeMB)
		}
		if c.MaxBackups < 0 {
			bad("max_backups: must not be negative, got %d", c.MaxBackups)
		}
		if c.MaxSizeMB > 0 && c.MaxBackups == 0 {
			bad("max_backups: must be at least 1 when max_size_mb is set, or rotation would discard data")
		}
	case "":
		bad("type: must be set to otlphttp, otlpgrpc, s3 or file")
	default:
		bad("type: %q must be otlphttp, otlpgrpc, s3 or file", c.Type)
	}

	label := fmt.Sprintf("exporter %q", c.Name)
	if c.Name == "" {
		label = "exporter with no name"
	}
	var named []error
	for _, err := range errs {
		if err != nil {
			named = append(named, fmt.Errorf("%s: %w", label, err))
		}
	}
	return errors.Join(named...)
}

func (t ExporterTLS) validate() error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return errors.New("tls: cert_file and key_file: set both or neither")
	}
	return nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return s != "" && err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}
