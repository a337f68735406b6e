package cli

import (
	"fmt"
	"net/http"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/tlsconfig"
)

// trustCA makes c trust the CAs in the PEM file caFile, instead of the
// system's, for a manager whose certificate a private CA signed; an empty
// caFile leaves c on the system's roots. It reads the file as the agent's
// tls.ca_file is read (size-bounded, every certificate checked).
func trustCA(c *apiclient.Client, caFile string) error {
	if caFile == "" {
		return nil
	}
	conf, err := tlsconfig.Client(config.ClientTLS{CAFile: caFile})
	if err != nil {
		return fmt.Errorf("--ca %s: %w", caFile, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = conf
	c.HTTP.Transport = tr
	return nil
}
