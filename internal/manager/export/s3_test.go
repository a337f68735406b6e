package export

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/periscope-dev/periscope/internal/otlp"
	"github.com/periscope-dev/periscope/internal/retry"
	"github.com/periscope-dev/periscope/internal/testenv"
)

const (
	s3Key    = testenv.VersityAccessKey
	s3Secret = testenv.VersitySecretKey
	s3Bucket = "telemetry"
)

// startVersityGW runs a versitygw S3 server over a fresh directory holding an empty
// s3Bucket and returns its endpoint URL.
func startVersityGW(t *testing.T) string {
	t.Helper()
	return testenv.VersityGW(t, s3Bucket)
}

// s3Object is an object read back from the store.
type s3Object struct {
	Key, ContentType, ContentEncoding string
	Body                              []byte
}

// listObjects reads every object in the bucket with a client independent of the exporter.
func listObjects(t *testing.T, endpoint string) []s3Object {
	t.Helper()
	ctx := context.Background()
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3Key, s3Secret, ""),
	})
	var objs []s3Object
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(s3Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("list objects: %v", err)
		}
		for _, o := range page.Contents {
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s3Bucket), Key: o.Key})
			if err != nil {
				t.Fatalf("get %s: %v", *o.Key, err)
			}
			body, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatalf("read %s: %v", *o.Key, err)
			}
			objs = append(objs, s3Object{Key: *o.Key, ContentType: aws.ToString(out.ContentType),
				ContentEncoding: aws.ToString(out.ContentEncoding), Body: body})
		}
	}
	return objs
}

func TestS3WritesOneObjectPerBatch(t *testing.T) {
	endpoint := startVersityGW(t)
	e := newExporter(t, Config{Name: "archive", Type: "s3", Endpoint: endpoint, Bucket: s3Bucket, Prefix: "/periscope/",
		Region: "us-east-1", AccessKeyID: s3Key, SecretAccessKey: s3Secret, PathStyle: true})

	// Received in UTC-5 late on the 4th is 04:xx UTC on the 5th: keys must use UTC.
	at := time.Date(2026, 3, 4, 23, 6, 7, 890, time.FixedZone("EST", -5*3600))
	sent := map[string]received{} // by signal/deployment
	for _, dep := range []string{"dep-a", "dep-b"} {
		for _, sig := range otlp.Signals {
			b := testBatch(t, sig, dep, 20)
			b.Received = at
			sent[sig.String()+"/"+dep] = want(sig, dep, 20)
			if err := e.Export(context.Background(), b); err != nil {
				t.Fatalf("Export(%s, %s) = %v", sig, dep, err)
			}
		}
	}

	keyRE := regexp.MustCompile(fmt.Sprintf(`^periscope/(traces|metrics|logs)/2026/03/05/04/(dep-a|dep-b)/%d-[0-9a-f]{8}\.json\.gz$`, at.UnixNano()))
	objs := listObjects(t, endpoint)
	if len(objs) != len(sent) {
		t.Fatalf("bucket holds %d objects, want %d: %+v", len(objs), len(sent), objs)
	}
	for _, o := range objs {
		m := keyRE.FindStringSubmatch(o.Key)
		if m == nil {
			t.Errorf("key %q does not follow the layout %s", o.Key, keyRE)
			continue
		}
		if o.ContentType != "application/json" || o.ContentEncoding != "gzip" {
			t.Errorf("%s: Content-Type %q, Content-Encoding %q; want application/json, gzip", o.Key, o.ContentType, o.ContentEncoding)
		}
		zr, err := gzip.NewReader(bytes.NewReader(o.Body))
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		sig, _ := otlp.ParseSignal(m[1])
		got, err := decodeOTLP(sig, data, true)
		if err != nil {
			t.Fatalf("%s does not decode as OTLP-JSON: %v", o.Key, err)
		}
		w, ok := sent[m[1]+"/"+m[2]]
		if !ok || !equalReceived(got, w) {
			t.Errorf("%s holds %+v\nwant %+v", o.Key, got, w)
		}
		delete(sent, m[1]+"/"+m[2])
	}
	if len(sent) != 0 {
		t.Errorf("no object for %v", sent)
	}
}

func TestS3ProtobufUncompressedWithEnvCredentials(t *testing.T) {
	endpoint := startVersityGW(t)
	// With a host name rather than an IP, the SDK would put the bucket in the host
	// name unless path_style is honoured.
	endpoint = strings.Replace(endpoint, "127.0.0.1", "localhost", 1)
	t.Setenv("AWS_ACCESS_KEY_ID", s3Key)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3Secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	e := newExporter(t, Config{Name: "archive", Type: "s3", Endpoint: endpoint, Bucket: s3Bucket,
		PathStyle: true, Format: "otlp_proto", Compression: "none"})
	e.(*s3Exporter).random = bytes.NewReader([]byte{0xde, 0xad, 0xbe, 0xef})

	b := testBatch(t, otlp.Metrics, "dep-a", 5)
	if err := e.Export(context.Background(), b); err != nil {
		t.Fatalf("Export = %v", err)
	}
	objs := listObjects(t, endpoint)
	wantKey := fmt.Sprintf("metrics/2026/03/04/05/dep-a/%d-deadbeef.pb", b.Received.UnixNano())
	if len(objs) != 1 || objs[0].Key != wantKey {
		t.Fatalf("bucket holds %+v, want one object %s", objs, wantKey)
	}
	if objs[0].ContentType != "application/x-protobuf" || objs[0].ContentEncoding != "" {
		t.Errorf("Content-Type %q, Content-Encoding %q; want application/x-protobuf and none", objs[0].ContentType, objs[0].ContentEncoding)
	}
	if !bytes.Equal(objs[0].Body, b.Data) {
		t.Errorf("object body differs from the batch's protobuf")
	}
}

func TestS3Errors(t *testing.T) {
	endpoint := startVersityGW(t)
	base := Config{Name: "archive", Type: "s3", Endpoint: endpoint, Bucket: s3Bucket,
		AccessKeyID: s3Key, SecretAccessKey: s3Secret, PathStyle: true}
	export := func(c Config) error {
		return newExporter(t, c).Export(context.Background(), testBatch(t, otlp.Logs, "dep-a", 1))
	}

	missing := base
	missing.Bucket = "no-such-bucket"
	if err := export(missing); err == nil || !retry.IsPermanent(err) || !strings.Contains(err.Error(), `s3 exporter "archive"`) {
		t.Errorf("Export to a missing bucket = %v, want a permanent error naming the exporter", err)
	}

	wrongSecret := base
	wrongSecret.SecretAccessKey = "wrong"
	if err := export(wrongSecret); err == nil || !retry.IsPermanent(err) {
		t.Errorf("Export with a wrong secret = %v, want a permanent error", err)
	}

	down := base
	down.Endpoint = "http://" + closedAddr(t)
	if err := export(down); err == nil || retry.IsPermanent(err) {
		t.Errorf("Export to a closed port = %v, want a retryable error", err)
	}

	garbage := testBatch(t, otlp.Logs, "dep-a", 1)
	garbage.Data = []byte{0xff, 0xff}
	if err := newExporter(t, base).Export(context.Background(), garbage); err == nil || !retry.IsPermanent(err) {
		t.Errorf("Export of an undecodable batch = %v, want a permanent error", err)
	}
	if objs := listObjects(t, endpoint); len(objs) != 0 {
		t.Errorf("failed exports left objects: %+v", objs)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	noCreds := base
	noCreds.AccessKeyID, noCreds.SecretAccessKey = "", ""
	if _, err := New(noCreds); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("New without credentials = %v, want a no credentials error", err)
	}
}
