// Package deploy holds the files that run Periscope in production: systemd
// units, the container image build file and Kubernetes manifests, with the
// configurations they carry (see docs/production.md). It has no code; its tests
// parse every file and check it against the real command tree and the real
// configuration loader, so a renamed flag or config key breaks the build here
// rather than a customer's rollout.
package deploy
