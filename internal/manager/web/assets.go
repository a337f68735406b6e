package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var staticFS embed.FS

// asset is one embedded file under its content-hashed name.
type asset struct {
	body        []byte
	contentType string
}

// assets maps each static file's name (app.css) to its hashed URL and the
// hashed name back to the file, so a page always loads the assets it was
// rendered with and a browser may cache them for a year.
type assets struct {
	url    map[string]string
	byName map[string]asset
}

func loadAssets() (*assets, error) {
	as := &assets{url: map[string]string{}, byName: map[string]asset{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := path.Base(p)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:6]) + ext
		ct := mime.TypeByExtension(ext)
		if ct == "" {
			ct = "application/octet-stream"
		}
		as.url[name] = "/assets/" + hashed
		as.byName[hashed] = asset{body: b, contentType: ct}
		return nil
	})
	return as, err
}

// URL returns the hashed URL of a static file; templates call it as {{asset "app.css"}}.
func (as *assets) URL(name string) (string, error) {
	u, ok := as.url[name]
	if !ok {
		return "", fmt.Errorf("no asset %q", name)
	}
	return u, nil
}

func (as *assets) serve(w http.ResponseWriter, r *http.Request) {
	a, ok := as.byName[r.PathValue("name")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(a.body)
}
