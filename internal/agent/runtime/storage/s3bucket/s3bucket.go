// Package s3bucket is the storage source for S3-compatible buckets: objects
// and bytes of a bucket and of prefixes in it, from one listing bounded in keys.
// It is a package of its own because it links the AWS SDK, which the storage
// package's other users need not compile against.
package s3bucket

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage"
	"github.com/periscope-dev/periscope/internal/config"
)

// s3PageKeys is the most keys one ListObjectsV2 page returns.
const s3PageKeys = 1000

// s3Source counts the objects and bytes of one bucket, and of configured
// prefixes in it, from one listing bounded by maxKeys.
type s3Source struct {
	storage.Base
	bucket    string
	prefixes  []string
	maxKeys   int
	pageKeys  int // s3PageKeys; tests page in smaller steps
	client    *s3.Client
	transport *http.Transport
}

// New builds the source of the s3 Config c, with credentials from env
// (os.Environ form); it validates c and starts nothing.
func New(c config.StorageSource, env []string) (runtime.Source, error) {
	if err := storage.Check(c, storage.KindS3); err != nil {
		return nil, err
	}
	return newSource(c, env), nil
}

func newSource(c storage.Config, env []string) *s3Source {
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	id, secret := c.Credentials(env)
	session := ""
	if c.UsernameEnv == "" && c.PasswordEnv == "" {
		id, secret, session = config.LookupEnv(env, "AWS_ACCESS_KEY_ID"), config.LookupEnv(env, "AWS_SECRET_ACCESS_KEY"), config.LookupEnv(env, "AWS_SESSION_TOKEN")
	}
	// A transport of its own, so Collect can close its idle connections: a
	// source collecting once a minute keeps nothing open in between.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	opts := s3.Options{
		Region:       region,
		UsePathStyle: c.PathStyle,
		HTTPClient:   &http.Client{Transport: tr},
		// No retries: a listing that fails is reported, and the next
		// collection tries again anyway.
		RetryMaxAttempts: 1,
	}
	if id != "" {
		opts.Credentials = credentials.NewStaticCredentialsProvider(id, secret, session)
	} else {
		opts.Credentials = aws.AnonymousCredentials{} // a public bucket
	}
	if c.URL != "" {
		opts.BaseEndpoint = aws.String(c.URL)
	}
	n := c.MaxKeys
	if n == 0 {
		n = storage.DefaultMaxKeys
	}
	return &s3Source{Base: storage.NewBase(c), bucket: c.Bucket, prefixes: c.Prefixes, maxKeys: n, pageKeys: s3PageKeys,
		client: s3.New(opts), transport: tr}
}

// tally is what the listing saw for the bucket or one prefix.
type tally struct {
	objects, bytes int64
	// complete is set once no key the listing has yet to reach can belong here.
	complete bool
}

// Collect lists the bucket once, in key order, up to maxKeys keys, and appends
// periscope.storage.objects and periscope.storage.size for the bucket and each
// prefix, and periscope.storage.listed. A figure the listing did not finish is
// marked periscope.partial=true. A prefix is finished as soon as the listing
// passes beyond its keys, so a cut listing still gives exact figures for the
// prefixes that sort early. When the listing fails part-way, what it saw is
// appended as partial and the error returned.
func (s *s3Source) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	defer s.transport.CloseIdleConnections()
	total := tally{}
	pre := make([]tally, len(s.prefixes))
	var listed int
	var last string
	var token *string
	var err error
	for listed < s.maxKeys {
		page := min(s.pageKeys, s.maxKeys-listed)
		var out *s3.ListObjectsV2Output
		out, err = s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket: aws.String(s.bucket), MaxKeys: aws.Int32(int32(page)), ContinuationToken: token,
		})
		if err != nil {
			err = s.Errorf("list bucket %s: %w", s.bucket, err)
			break
		}
		for _, o := range out.Contents {
			key, size := aws.ToString(o.Key), aws.ToInt64(o.Size)
			total.objects++
			total.bytes += size
			for i, p := range s.prefixes {
				if strings.HasPrefix(key, p) {
					pre[i].objects++
					pre[i].bytes += size
				}
			}
			last = key
		}
		listed += len(out.Contents)
		if !aws.ToBool(out.IsTruncated) {
			total.complete = true
			break
		}
		token = out.NextContinuationToken
		// A page that says there is more but holds nothing, or gives no way
		// on, would loop until the deadline: a broken store, reported.
		if token == nil || len(out.Contents) == 0 {
			err = s.Errorf("list bucket %s: truncated page with no keys or no continuation token", s.bucket)
			break
		}
	}
	if err != nil && listed == 0 {
		return err
	}
	for i, p := range s.prefixes {
		// Keys come in byte order: once one sorts after every key starting
		// with p, no later key can start with it.
		pre[i].complete = total.complete || (last > p && !strings.HasPrefix(last, p))
	}

	objects := runtime.Gauge(ms, "periscope.storage.objects", "{object}", "Objects in the bucket, or under the prefix, as far as the listing went.")
	bytes := runtime.Gauge(ms, "periscope.storage.size", "By", "Bytes of the objects in the bucket, or under the prefix, as far as the listing went.")
	bucket := storage.Clip(s.bucket, storage.MaxAttrLen)
	put := func(t tally, kv ...string) {
		kv = append(kv, "aws.s3.bucket", bucket, storage.AttrSource, s.Name())
		o, b := runtime.Point(objects, now, t.objects, kv...), runtime.Point(bytes, now, t.bytes, kv...)
		if !t.complete {
			o.Attributes().PutBool(storage.AttrPartial, true)
			b.Attributes().PutBool(storage.AttrPartial, true)
		}
	}
	put(total)
	for i, p := range s.prefixes {
		put(pre[i], "periscope.storage.prefix", storage.Clip(p, storage.MaxAttrLen))
	}
	l := runtime.Point(runtime.Gauge(ms, "periscope.storage.listed", "{object}", "Keys the last collection listed, at most the source's max_keys."),
		now, int64(listed), "aws.s3.bucket", bucket, storage.AttrSource, s.Name())
	if !total.complete {
		l.Attributes().PutBool(storage.AttrPartial, true)
	}
	return err
}
