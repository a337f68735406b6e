package infra_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/demo/infra"
)

// TestMain fails the package's tests if a server's goroutine outlives its
// Shutdown.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestNATSKeepsAStreamUntilShutdown stores a message in a JetStream stream of
// the embedded server, reads it back, and finds the port closed after
// Shutdown, which is idempotent.
func TestNATSKeepsAStreamUntilShutdown(t *testing.T) {
	ctx := context.Background()
	if _, err := infra.NewNATS(infra.NATSConfig{}); err == nil {
		t.Fatal("NewNATS accepted a config without a directory")
	}
	n, err := infra.NewNATS(infra.NATSConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if n.URL() != "" {
		t.Fatalf("URL before Start = %q", n.URL())
	}
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	url := n.URL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("URL = %q", url)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.one", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, "T")
	m, err := s.GetMsg(ctx, 1)
	if err != nil || string(m.Data) != "hello" {
		t.Fatalf("stored message = %v, %v", m, err)
	}
	nc.Close()
	for range 2 {
		if err := n.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		t.Fatal("the server still accepts clients after Shutdown")
	}
}

// TestS3StoresObjectsAndBoundsUploads writes and lists an object through the
// AWS SDK, path style, and refuses an upload above the bound.
func TestS3StoresObjectsAndBoundsUploads(t *testing.T) {
	ctx := context.Background()
	s, err := infra.NewS3(infra.S3Config{MaxObjectBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown without Start: %v", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)
	if err := s.CreateBucket("invoices"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBucket("invoices"); err != nil {
		t.Fatalf("creating an existing bucket again: %v", err)
	}
	c := s3.New(s3.Options{Region: infra.S3Region, UsePathStyle: true, BaseEndpoint: aws.String(s.URL()),
		Credentials:                credentials.NewStaticCredentialsProvider(infra.S3AccessKeyID, infra.S3SecretAccessKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired})
	put := func(key string, n int) error {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("invoices"), Key: aws.String(key), Body: bytes.NewReader(bytes.Repeat([]byte("x"), n))})
		return err
	}
	if err := put("a.json", 100); err != nil {
		t.Fatal(err)
	}
	if err := put("big.json", 4096); err == nil {
		t.Fatal("an upload above MaxObjectBytes was stored")
	}
	out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("invoices")})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 1 || aws.ToString(out.Contents[0].Key) != "a.json" {
		t.Fatalf("listing = %v", out.Contents)
	}
	obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("invoices"), Key: aws.String("a.json")})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	if len(data) != 100 {
		t.Fatalf("read %d bytes, want 100", len(data))
	}
}
