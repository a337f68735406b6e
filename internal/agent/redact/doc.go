// Package redact finds personal data and secrets inside strings and replaces only the
// matching parts, so what the agent forwards stays operational telemetry rather than a
// copy of the customer's records.
//
// # Detectors
//
// Each detector has a [Kind]: e-mail addresses, payment card numbers (13–19 digits,
// Luhn-checked and within the networks' prefixes, so order ids and other digit runs
// survive), valid IPv4 and IPv6 addresses other than loopback and unspecified, bearer tokens and Authorization values, API keys of the common providers
// (AWS, GitHub, Slack and its webhook URLs, Stripe, Google, OpenAI, PEM private keys), JWTs, passwords in
// URLs and key=value connection strings (and, counted as passwords, the values of
// token, secret and API key names in text: "access_token=…", "X-Api-Key: …"), and
// custom regular expressions from
// configuration. The built-in detectors are hand-written scanners behind cheap byte
// checks; regular expressions run only for custom patterns.
//
// # Usage
//
//	r, err := redact.New(redact.Default())
//	out, counts := r.String(line)
//
// A match is masked as "[REDACTED:<kind>]", or hashed as "[<kind>:<12 hex>]" with a keyed
// HMAC-SHA256, so equal values stay joinable without being readable. Redacting the output
// again changes nothing: the markers are never matched.
//
// # Cost
//
// A string with nothing to redact is returned as is, without allocating; the caller can
// compare counts.Total() with zero to know whether anything changed.
//
// # Concurrency
//
// A [Redactor] is immutable after [New] and safe for concurrent use.
package redact
