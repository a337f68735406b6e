// Package telstoretest is the conformance suite of the telemetry stores: every
// behaviour a user of the investigation queries notices, run by each store's
// tests against its own engine (the embedded DuckDB store and PostgreSQL), so
// both answer the same.
package telstoretest

import (
	"context"
	"testing"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// Store is what the suite needs of a telemetry store.
type Store interface {
	consumer.Sink
	Flush(ctx context.Context) error
	Close() error
	// Retain enforces retention once.
	Retain(ctx context.Context) error
	Logs(ctx context.Context, q telquery.LogQuery) (telquery.LogPage, error)
	TailLogs(ctx context.Context, q telquery.LogQuery, fn func(telquery.Log) error) error
	Spans(ctx context.Context, q telquery.SpanQuery) (telquery.SpanPage, error)
	Trace(ctx context.Context, traceID string) (telquery.Trace, error)
	RED(ctx context.Context, q telquery.REDQuery) (telquery.RED, error)
	CompareReleases(ctx context.Context, q telquery.CompareQuery) (telquery.Comparison, error)
	Metric(ctx context.Context, q telquery.MetricQuery) (telquery.Metric, error)
	MetricNames(ctx context.Context, q telquery.MetricNamesQuery) (telquery.MetricNames, error)
	ErrorRates(ctx context.Context, q telquery.ErrorRateQuery) (telquery.ErrorRates, error)
	Runtime(ctx context.Context, q telquery.RuntimeQuery) (telquery.RuntimeMetrics, error)
}

// Options are the settings a test opens its store with.
type Options struct {
	// Clock is the store's clock; nil means a fake one an hour after T0.
	Clock clock.Clock
	// MaxAge is the store's retention by age; 0 means its default.
	MaxAge time.Duration
}

// Opener opens an empty store for one test, closed when the test ends.
type Opener func(t *testing.T, o Options) Store

// maxPoints is the most points a series has, whatever step a query asks for.
const maxPoints = 1500

// Run runs the suite, each test on a store of its own.
func Run(t *testing.T, open Opener) {
	withClock := func(t *testing.T, o Options) Store {
		if o.Clock == nil {
			o.Clock = clock.NewFake(T0.Add(time.Hour))
		}
		return open(t, o)
	}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"LogsAreFilteredAndPagedNewestFirst", testLogsAreFilteredAndPagedNewestFirst},
		{"TraceComesBackAsATree", testTraceComesBackAsATree},
		{"REDFromRollupsMatchesRawRows", testREDFromRollupsMatchesRawRows},
		{"CompareReleasesOfADeploymentAndTheFleet", testCompareReleasesOfADeploymentAndTheFleet},
		{"MetricSeriesGroupedByAttribute", testMetricSeriesGroupedByAttribute},
		{"TailSeesNewRecordsOnly", testTailSeesNewRecordsOnly},
		{"RetentionByAgeDropsOldRecords", testRetentionByAgeDropsOldRecords},
		{"ACancelledConsumeIsStoredOnlyIfAcknowledged", testACancelledConsumeIsStoredOnlyIfAcknowledged},
		{"CompareAfterARollbackUsesTheCurrentStretch", testCompareAfterARollbackUsesTheCurrentStretch},
		{"CompareJustAfterASwitchSeesThePreviousRelease", testCompareJustAfterASwitchSeesThePreviousRelease},
		{"TraceWithAParentCycleStillShowsEverySpan", testTraceWithAParentCycleStillShowsEverySpan},
		{"TailMissesNothingWhileWritersCommitConcurrently", testTailMissesNothingWhileWritersCommitConcurrently},
		{"REDBoundsPointsAndRatesThePartialLastStep", testREDBoundsPointsAndRatesThePartialLastStep},
		{"ErrorRatesOfSeveralDeploymentsInOneQuery", testErrorRatesOfSeveralDeploymentsInOneQuery},
		{"SpanEventsAreKeptInOrder", testSpanEventsAreKeptInOrder},
		{"RuntimeGivesTheNewestPointAndTheBaselineBeforeTheWindow", testRuntimeGivesTheNewestPointAndTheBaselineBeforeTheWindow},
		{"RuntimeGivesHistogramBucketsOfTheNewestPointAndTheBaseline", testRuntimeGivesHistogramBucketsOfTheNewestPointAndTheBaseline},
		{"HistogramsWithoutReadableBucketsKeepCountAndSum", testHistogramsWithoutReadableBucketsKeepCountAndSum},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, withClock) })
	}
}
