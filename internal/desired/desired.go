// Package desired is the contract between the manager and an agent for the release
// a deployment should run: how the manager offers it over OpAMP and how the agent
// reads it. Both sides import it, so it stays pure Go and tiny.
//
// The offer travels as OpAMP remote configuration: one JSON file named FileName
// in the AgentRemoteConfig's config map, whose config hash is the SHA-256 of the
// body. The agent answers with RemoteConfigStatus (APPLYING, APPLIED or FAILED
// with the hook's error) carrying that hash, which is how the manager knows which
// offer a status is about.
package desired

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/internal/command"
)

// FileName is the remote-configuration file that carries the offer.
const FileName = "periscope.desired.json"

// ContentType is the offer file's content type.
const ContentType = "application/json"

// Offer is the release a deployment should run.
type Offer struct {
	// Stack is the vendor stack the release belongs to.
	Stack string `json:"stack,omitempty"`
	// Release is the version to run.
	Release string `json:"release"`
	// ConfigHash is the effective-configuration hash the manager expects once the
	// release is applied ("" when it has no expectation).
	ConfigHash string `json:"config_hash,omitempty"`
	// Commands are the commands the release declares: the only ones the agent
	// will run while this offer is its latest.
	Commands []command.Spec `json:"commands,omitempty"`
}

// Encode returns the OpAMP remote configuration that carries o. The same offer
// always encodes to the same bytes and hash.
func Encode(o Offer) *protobufs.AgentRemoteConfig {
	body, _ := json.Marshal(o) // plain data cannot fail to marshal
	h := sha256.Sum256(body)
	return &protobufs.AgentRemoteConfig{
		Config:     &protobufs.AgentConfigMap{ConfigMap: map[string]*protobufs.AgentConfigFile{FileName: {Body: body, ContentType: ContentType}}},
		ConfigHash: h[:],
	}
}

// Hash is the config hash of o's encoding.
func Hash(o Offer) []byte { return Encode(o).ConfigHash }

// ErrNoOffer means a remote configuration carries no release offer (it is some
// other remote configuration).
var ErrNoOffer = errors.New("no release offer in the remote configuration")

// Decode reads the offer from a remote configuration.
func Decode(rc *protobufs.AgentRemoteConfig) (Offer, error) {
	f := rc.GetConfig().GetConfigMap()[FileName]
	if f == nil {
		return Offer{}, ErrNoOffer
	}
	var o Offer
	if err := json.Unmarshal(f.Body, &o); err != nil {
		return Offer{}, fmt.Errorf("release offer %s: %w", FileName, err)
	}
	if o.Release == "" {
		return Offer{}, fmt.Errorf("release offer %s names no release", FileName)
	}
	if err := command.ValidateSpecs(o.Commands); err != nil {
		return Offer{}, fmt.Errorf("release offer %s: %w", FileName, err)
	}
	return o, nil
}
