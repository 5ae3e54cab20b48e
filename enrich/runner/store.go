package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/enricher-dev/enricher/enrich"
)

// Errors a Store wraps, so that the runner can tell what is worth retrying.
var (
	// ErrUnavailable: the store could not be reached or was overloaded (connection
	// refused, timeout, 429, 5xx). The same request may succeed later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrRefused: the store refused the request and will refuse it again (bad
	// credentials, a missing privilege, a malformed request). Retrying the same input
	// is useless; an operator has to act.
	ErrRefused = errors.New("store refused the request")
)

// Store is where alerts are read and written: Elasticsearch or OpenSearch
// (enrich/elastic), or a stream of documents (the offline enrich command).
type Store interface {
	// Prepare readies indices for writes of enricher's fields (field mappings). indices
	// are concrete index names; nil means every index the store's patterns match. It
	// returns the indices that are ready, those that cannot be written (each with the
	// reason), and an error only when the store as a whole cannot be used (wrapping
	// ErrUnavailable or ErrRefused). Calling it again for a ready index changes nothing.
	Prepare(ctx context.Context, indices []string) (ready []string, problems []IndexProblem, err error)
	// Scan returns the alerts a spec selects, page by page. The selection is a superset
	// of what is pending: the runner decides per alert (enrich.Generation.Classify).
	Scan(ctx context.Context, spec ScanSpec) (Scanner, error)
	// Write writes new versions of alerts, each guarded by the version it was read at
	// (Alert.SeqNo and PrimaryTerm), and returns one result per item, in order. It bounds
	// each request by count and bytes and splits a request the store finds too large.
	// An error means no item's result is known (wrapping ErrUnavailable or ErrRefused).
	Write(ctx context.Context, items []WriteItem) ([]WriteResult, error)
	// Reread returns the current version of alerts, read in real time (not from the last
	// refresh); alerts that no longer exist are left out.
	Reread(ctx context.Context, alerts []*enrich.Alert) ([]*enrich.Alert, error)
}

// DetailPublisher writes the mapping detail index for a stage's rules (see
// enrich.DetailSource). Publishing what is published already changes nothing.
type DetailPublisher interface {
	PublishDetails(ctx context.Context, src enrich.DetailSource) error
}

// Scanner pages through the alerts of one scan.
type Scanner interface {
	// Next returns the next page; an empty page ends the scan.
	Next(ctx context.Context) (Page, error)
	// Close releases what the scan holds (a point in time). Best effort.
	Close(ctx context.Context)
}

// ScanSpec selects the alerts of one scan.
type ScanSpec struct {
	// Root and Generation say what pending means: an alert that carries a technique
	// field and is not done for Generation (enriched by it, newer, or quarantined).
	Root       string
	Generation enrich.Generation
	// TechniqueFields: an alert qualifies when one of them holds a value.
	TechniqueFields []enrich.Field
	// Since selects alerts whose time field is at or after it (the live path); zero:
	// no lower bound.
	Since time.Time
	// Until selects alerts whose time field is at or before it, or that have none (the
	// backfill); zero: no upper bound. With UntilMissing only alerts without a time
	// field are selected (a backfill that reached them).
	Until        time.Time
	UntilMissing bool
	// Exclude are concrete indices to leave out.
	Exclude []string
	// PageSize bounds a page.
	PageSize int
	// Stable pages through one consistent view (a point in time), newest first: for
	// long scans. Otherwise the first page is one plain search, and a consistent view
	// is opened only when it is full.
	Stable bool
	// WantTotal asks for Page.Total and Page.Oldest on the first page.
	WantTotal bool
	// Slice selects one part of the alerts, when replicas share the work (Max > 1):
	// those that Slice.Owns. Slices are disjoint and cover every alert.
	Slice Slice
}

// Page is one page of a scan.
type Page struct {
	Alerts []*enrich.Alert
	// Total is the number of alerts the scan selects (first page, with WantTotal), else -1.
	Total int
	// Oldest is the time of the oldest selected alert that needs enrichment (not only
	// stages), first page with WantTotal; zero if unknown or none.
	Oldest time.Time
	// Cursor is where the page ends, to resume a scan newest-first after a restart.
	Cursor Cursor
}

// Cursor is a position in a newest-first scan.
type Cursor struct {
	Time    time.Time `json:"time"`
	Missing bool      `json:"missing,omitempty"` // reached alerts without a time field
}

// WriteItem is one alert's new _source.
type WriteItem struct {
	Alert  *enrich.Alert
	Source []byte
}

// ItemStatus sorts one write's result.
type ItemStatus int

// Write results.
const (
	ItemWritten     ItemStatus = iota
	ItemConflict               // changed since read: re-read and retry
	ItemRetry                  // the store was busy for this item (429, 5xx): retry after a backoff
	ItemGone                   // the alert was deleted
	ItemFailed                 // refused because of this alert: counts against its attempts
	ItemIndexFailed            // refused because of its index (read-only, mapping, field limit)
)

func (s ItemStatus) String() string {
	return [...]string{"written", "conflict", "retry", "gone", "failed", "index_failed"}[s]
}

// WriteResult is the result of one WriteItem.
type WriteResult struct {
	Status ItemStatus
	Code   int    // HTTP status of the item
	Reason string // error type and reason, for failures
	// SeqNo and PrimaryTerm of the version written.
	SeqNo, PrimaryTerm int64
}

// IndexProblem says why an index cannot be written.
type IndexProblem struct {
	Index string
	// Reason is a low-cardinality word: mapping_conflict, forbidden, read_only,
	// field_limit, no_source, closed, unavailable.
	Reason string
	// Detail is the store's message (names the field or privilege).
	Detail string
	// Permanent problems need an operator; the others pass (a disk freed, ILM).
	Permanent bool
}

func (p IndexProblem) Error() string {
	return fmt.Sprintf("index %s: %s: %s", p.Index, p.Reason, p.Detail)
}

// StateStore keeps what replicas and restarts share: the order of generations and the
// checkpoints of the backfill.
type StateStore interface {
	// RegisterGeneration returns the number of g's fingerprint (g.Hash), registering it
	// with a number above every generation registered before, and above every
	// generation found on alerts under root, when it is new. Idempotent.
	RegisterGeneration(ctx context.Context, g enrich.Generation, root string) (int64, error)
	// NewestGeneration returns the newest generation registered.
	NewestGeneration(ctx context.Context) (enrich.Generation, error)
	// Load returns the checkpoint stored under key, or nil.
	Load(ctx context.Context, key string) ([]byte, error)
	// Save stores a checkpoint under key.
	Save(ctx context.Context, key string, value []byte) error
}
