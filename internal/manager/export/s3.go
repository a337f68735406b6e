package export

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/klauspost/compress/gzip"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/retry"
)

// s3Exporter writes each batch as one object; the key layout is in the package doc.
type s3Exporter struct {
	name    string
	bucket  string
	prefix  string // without leading or trailing slashes
	json    bool   // OTLP-JSON rather than protobuf
	gzip    bool
	timeout time.Duration
	client  *s3.Client
	random  io.Reader // the random part of object keys; crypto/rand unless a test injects one
}

func newS3(c Config) (*s3Exporter, error) {
	creds, err := s3Credentials(c)
	if err != nil {
		return nil, err
	}
	region := c.Region
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	if region == "" {
		region = "us-east-1"
	}
	client := s3.New(s3.Options{
		Region:       region,
		Credentials:  aws.NewCredentialsCache(creds),
		UsePathStyle: c.PathStyle,
		// The caller owns retries; the SDK's own would multiply its attempts and delays.
		Retryer: aws.NopRetryer{},
	}, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
			// Many S3-compatible stores reject the flexible checksums the SDK now sends
			// by default; PutObject does not need them.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	return &s3Exporter{
		name:    c.Name,
		bucket:  c.Bucket,
		prefix:  strings.Trim(c.Prefix, "/"),
		json:    c.Format != "otlp_proto",
		gzip:    c.Compression != "none",
		timeout: timeout(c),
		client:  client,
		random:  rand.Reader,
	}, nil
}

// s3Credentials uses the configured keys, else the standard AWS environment variables.
// The SDK's full default chain (shared config files, SSO, instance roles) lives in a
// module Periscope does not depend on.
func s3Credentials(c Config) (aws.CredentialsProvider, error) {
	if c.AccessKeyID != "" {
		return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""), nil
	}
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if id == "" || secret == "" {
		return nil, errors.New("no credentials: set access_key_id and secret_access_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	return credentials.NewStaticCredentialsProvider(id, secret, os.Getenv("AWS_SESSION_TOKEN")), nil
}

// Name returns the exporter's configured name.
func (e *s3Exporter) Name() string { return e.name }

// Export writes b as one new object.
func (e *s3Exporter) Export(ctx context.Context, b consumer.Batch) error {
	if err := e.export(ctx, b); err != nil {
		return fmt.Errorf("s3 exporter %q: %w", e.name, err)
	}
	return nil
}

func (e *s3Exporter) export(ctx context.Context, b consumer.Batch) error {
	body, ext, contentType := b.Data, "pb", "application/x-protobuf"
	if e.json {
		var err error
		if body, err = otlpJSON(b); err != nil {
			return err
		}
		ext, contentType = "json", "application/json"
	} else if _, err := decodeRequest(b); err != nil {
		// Stored objects are meant to be read back as OTLP; refuse what would not be.
		return err
	}
	var contentEncoding *string
	if e.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(body); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		body, ext, contentEncoding = buf.Bytes(), ext+".gz", aws.String("gzip")
	}
	key, err := e.key(b, ext)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	_, err = e.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:          aws.String(e.bucket),
		Key:             aws.String(key),
		Body:            bytes.NewReader(body),
		ContentLength:   aws.Int64(int64(len(body))),
		ContentType:     aws.String(contentType),
		ContentEncoding: contentEncoding,
	})
	if err != nil {
		return s3Error(fmt.Errorf("put s3://%s/%s: %w", e.bucket, key, err))
	}
	return nil
}

// key builds the object key documented in the package doc.
func (e *s3Exporter) key(b consumer.Batch, ext string) (string, error) {
	var r [4]byte
	if _, err := io.ReadFull(e.random, r[:]); err != nil {
		return "", fmt.Errorf("random key suffix: %w", err)
	}
	deployment := b.DeploymentID
	if deployment == "" {
		deployment = "unknown"
	}
	t := b.Received.UTC()
	name := fmt.Sprintf("%d-%s.%s", t.UnixNano(), hex.EncodeToString(r[:]), ext)
	// PathEscape keeps a deployment ID with a slash in it to one key segment.
	return path.Join(e.prefix, b.Signal.String(), t.Format("2006/01/02/15"), url.PathEscape(deployment), name), nil
}

// s3Error classifies a PutObject failure: S3 reports a timed-out upload as a 400
// RequestTimeout and throttling as 503 SlowDown, both worth retrying; other 4xx (no
// such bucket, access denied) will fail the same way every time.
func s3Error(err error) error {
	var re *awshttp.ResponseError
	if !errors.As(err, &re) {
		return err // never reached the store, or no answer: retry
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode() == "RequestTimeout" {
		return err
	}
	code := re.HTTPStatusCode()
	if code == http.StatusTooManyRequests || code >= 500 {
		if re.Response != nil {
			return retry.ThrottleHeader(err, re.Response.Header, time.Now())
		}
		return err
	}
	if code >= 400 {
		return retry.Permanent(err)
	}
	return err
}

// Close has nothing to release: idle SDK connections time out on their own.
func (e *s3Exporter) Close(context.Context) error { return nil }
