package sampleapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// invoice is the object each checkout stores; it holds the shopper's e-mail,
// as a real invoice would.
type invoice struct {
	Order   string   `json:"order"`
	Email   string   `json:"email"`
	Items   []string `json:"items"`
	Cents   int      `json:"cents"`
	Release string   `json:"release"`
}

// invoiceBucket writes invoices and deletes its oldest beyond Keep.
type invoiceBucket struct {
	cfg    Bucket
	client *s3.Client

	mu   sync.Mutex
	kept []string // keys this instance wrote, oldest first, at most Keep
}

// InvoicePrefix is where invoices are stored in the bucket.
const InvoicePrefix = "invoices/"

// openBucket creates the bucket when missing.
func openBucket(ctx context.Context, cfg Bucket) (*invoiceBucket, error) {
	client := s3.New(s3.Options{
		Region:       cfg.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		UsePathStyle: true,
		BaseEndpoint: aws.String(cfg.Endpoint),
		// S3-compatible stores reject the flexible checksums the SDK sends by
		// default; a PutObject does not need them.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.CreateBucket(cctx, &s3.CreateBucketInput{Bucket: aws.String(cfg.Name)}); err != nil {
		var api smithy.APIError
		if !errors.As(err, &api) || (api.ErrorCode() != "BucketAlreadyOwnedByYou" && api.ErrorCode() != "BucketAlreadyExists") {
			return nil, fmt.Errorf("bucket %s: %w", cfg.Name, err)
		}
	}
	return &invoiceBucket{cfg: cfg, client: client}, nil
}

// put stores one invoice, then deletes the oldest this instance kept beyond
// Keep.
func (b *invoiceBucket) put(ctx context.Context, order string, inv invoice) error {
	data, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("encode invoice: %w", err)
	}
	key := InvoicePrefix + order + ".json"
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := b.client.PutObject(pctx, &s3.PutObjectInput{Bucket: aws.String(b.cfg.Name), Key: aws.String(key),
		Body: bytes.NewReader(data), ContentType: aws.String("application/json")}); err != nil {
		return fmt.Errorf("store invoice %s: %w", key, err)
	}
	b.mu.Lock()
	b.kept = append(b.kept, key)
	var old string
	if len(b.kept) > b.cfg.Keep {
		old = b.kept[0]
		b.kept = append(b.kept[:0], b.kept[1:]...)
	}
	b.mu.Unlock()
	if old != "" {
		if _, err := b.client.DeleteObject(pctx, &s3.DeleteObjectInput{Bucket: aws.String(b.cfg.Name), Key: aws.String(old)}); err != nil {
			return fmt.Errorf("delete old invoice %s: %w", old, err)
		}
	}
	return nil
}
