package storage

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want []string // substrings of the error, every one; none means valid
	}{
		{"s3", Config{Kind: KindS3, Name: "exports", Bucket: "b", Prefixes: []string{"logs/"}, URL: "https://s3.example.com", PathStyle: true, MaxKeys: 5000}, nil},
		{"s3 on AWS", Config{Kind: KindS3, Name: "exports", Bucket: "b", UsernameEnv: "KEY_ID", PasswordEnv: "SECRET"}, nil},
		{"redis", Config{Kind: KindRedis, Name: "cache", URL: "rediss://cache:6380", PasswordEnv: "REDIS_PASSWORD"}, nil},
		{"postgres", Config{Kind: KindPostgres, Name: "main", URL: "postgres://app@db:5432/app?sslmode=require", MaxTables: 20}, nil},
		{"filesystem", Config{Kind: KindFilesystem, Name: "data", Paths: []string{"/var/lib/app", "/"}}, nil},

		{"no kind", Config{Name: "x"}, []string{`f.kind: "" must be s3, redis, postgres or filesystem`}},
		{"bad name", Config{Kind: KindFilesystem, Name: "a/b", Paths: []string{"/"}}, []string{"f.name:"}},
		{"no name", Config{Kind: KindFilesystem, Paths: []string{"/"}}, []string{"f.name:"}},
		{"s3 everything wrong", Config{Kind: KindS3, Name: "x", URL: "ftp://h", MaxKeys: -1, Prefixes: []string{""}, MaxTables: 3, Paths: []string{"/"}},
			[]string{"f.url: scheme \"ftp\"", "f.bucket: must be", "f.max_keys: must not be negative", "f.prefixes[0]:", "f.max_tables: does not apply to s3", "f.paths: does not apply to s3"}},
		{"s3 too many prefixes", Config{Kind: KindS3, Name: "x", Bucket: "b", Prefixes: make([]string, maxPrefixes+1)}, []string{"f.prefixes: 33 given"}},
		{"redis password in url", Config{Kind: KindRedis, Name: "c", URL: "redis://u:hunter2@cache:6379"}, []string{"f.url: holds a password"}},
		{"redis wrong scheme, s3 fields", Config{Kind: KindRedis, Name: "c", URL: "http://cache:6379", Bucket: "b", MaxKeys: 3},
			[]string{"f.url: scheme \"http\" must be redis or rediss", "f.bucket: does not apply to redis", "f.max_keys: does not apply to redis"}},
		{"postgres password parameter", Config{Kind: KindPostgres, Name: "m", URL: "postgres://db/app?password=hunter2"}, []string{"f.url: holds a password"}},
		{"postgres no url, too many tables", Config{Kind: KindPostgres, Name: "m", MaxTables: 1000}, []string{"f.url: must be a URL like postgres://host:port", "f.max_tables: 1000"}},
		{"bad env name", Config{Kind: KindRedis, Name: "c", URL: "redis://cache:6379", PasswordEnv: "NOT-A-NAME"}, []string{"f.password_env:"}},
		{"filesystem relative and none", Config{Kind: KindFilesystem, Name: "d", Paths: []string{"data"}, URL: "redis://x:1"}, []string{"f.paths[0]: \"data\" must be an absolute path", "f.url: does not apply to filesystem"}},
		{"filesystem no paths", Config{Kind: KindFilesystem, Name: "d"}, []string{"f.paths: 0 given"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate("f")
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tc.c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error echoes the password: %v", err)
			}
		})
	}
}

func TestNewRefusesAnInvalidConfig(t *testing.T) {
	_, err := New(Config{Kind: KindRedis, Name: "cache"}, nil)
	if err == nil || !strings.Contains(err.Error(), "redis/cache.url") {
		t.Fatalf("New: %v, want the url refused under redis/cache", err)
	}
}

func TestCredentialsComeFromTheNamedVariables(t *testing.T) {
	c := Config{UsernameEnv: "APP_USER", PasswordEnv: "APP_PASS"}
	user, pass := c.Credentials([]string{"OTHER=1", "APP_USER=reader", "APP_PASS=s=cret"})
	if user != "reader" || pass != "s=cret" {
		t.Errorf("credentials = %q, %q", user, pass)
	}
	if user, pass := (Config{}).Credentials([]string{"=x"}); user != "" || pass != "" {
		t.Errorf("unnamed credentials = %q, %q", user, pass)
	}
}
