package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/enricher-dev/enricher/enrich/runner"
)

// Write implements runner.Store: each item is a whole-document index operation guarded by
// if_seq_no/if_primary_term, so a document changed since it was read (an analyst closing
// the alert) is never overwritten, and every byte of the alert outside enricher's fields
// is written back exactly as read. Requests are bounded by MaxRequestItems and
// MaxRequestBytes; a request Elasticsearch finds too large (413, or a 429 from a circuit
// breaker) is split in halves and sent again.
func (s *Store) Write(ctx context.Context, items []runner.WriteItem) ([]runner.WriteResult, error) {
	out := make([]runner.WriteResult, len(items))
	// Every line goes into one buffer; a request is a contiguous slice of it (no copy per
	// request or per split).
	var buf bytes.Buffer
	size := 0
	for _, it := range items {
		size += len(it.Source) + 160
	}
	buf.Grow(size)
	offs := make([]int, len(items)+1)
	for i, it := range items {
		appendBulkLine(&buf, it)
		offs[i+1] = buf.Len()
	}
	all := buf.Bytes()
	start := 0
	for start < len(items) {
		end := start
		for end < len(items) && end-start < s.o.MaxRequestItems &&
			(end == start || offs[end+1]-offs[start] <= s.o.MaxRequestBytes) {
			end++
		}
		if err := s.send(ctx, all, offs[start:end+1], out[start:end]); err != nil {
			return nil, err
		}
		start = end
	}
	return out, nil
}

// send sends the lines all[offs[0]:offs[len(out)]] (line i is all[offs[i]:offs[i+1]]) as
// one request, splitting it when Elasticsearch finds it too large.
func (s *Store) send(ctx context.Context, all []byte, offs []int, out []runner.WriteResult) error {
	n := len(out)
	body := all[offs[0]:offs[n]]
	code, resp, err := s.c.Do(ctx, "bulk", http.MethodPost, "/_bulk", nil, body)
	if tooLarge(code, resp) {
		if n == 1 {
			out[0] = runner.WriteResult{Status: runner.ItemFailed, Code: code,
				Reason: fmt.Sprintf("the alert's write (%d bytes) is too large for Elasticsearch: %s", len(body), errorReason(resp))}
			return nil
		}
		half := n / 2
		s.log.Info("bulk request too large; splitting it", "items", n, "bytes", len(body), "status", code)
		if err := s.send(ctx, all, offs[:half+1], out[:half]); err != nil {
			return err
		}
		return s.send(ctx, all, offs[half:], out[half:])
	}
	if err != nil {
		return fmt.Errorf("bulk write of %d alerts: %w", n, err)
	}
	if code != http.StatusOK {
		return statusError(fmt.Sprintf("bulk write of %d alerts", n), code, resp)
	}
	res, err := parseBulk(resp, n)
	if err != nil {
		return fmt.Errorf("bulk write: %w: %w", ErrUnavailable, err)
	}
	copy(out, res)
	return nil
}

// tooLarge reports a whole-request answer that a smaller request would not get: 413, or
// a 429 from a circuit breaker (the request's memory, not the node's load).
func tooLarge(code int, body []byte) bool {
	return code == http.StatusRequestEntityTooLarge ||
		code == http.StatusTooManyRequests && bytes.Contains(body, []byte("circuit_breaking_exception"))
}

// appendBulkLine encodes one item, action and document, onto buf.
func appendBulkLine(buf *bytes.Buffer, it runner.WriteItem) {
	a := it.Alert
	buf.WriteString(`{"index":{"_index":`)
	writeJSONString(buf, a.Index)
	buf.WriteString(`,"_id":`)
	writeJSONString(buf, a.ID)
	if a.PrimaryTerm > 0 {
		buf.WriteString(`,"if_seq_no":`)
		buf.WriteString(strconv.FormatInt(a.SeqNo, 10))
		buf.WriteString(`,"if_primary_term":`)
		buf.WriteString(strconv.FormatInt(a.PrimaryTerm, 10))
	}
	buf.WriteString("}}\n")
	buf.Write(it.Source)
	buf.WriteByte('\n')
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s)
	buf.Write(b)
}

// errBulkResponse is a bulk response that does not match its request.
var errBulkResponse = errors.New("malformed bulk response")

// parseBulk reads a _bulk response and sorts each item by its result.
func parseBulk(body []byte, n int) ([]runner.WriteResult, error) {
	var res struct {
		Items []map[string]struct {
			Status      int    `json:"status"`
			Result      string `json:"result"`
			SeqNo       int64  `json:"_seq_no"`
			PrimaryTerm int64  `json:"_primary_term"`
			Error       *struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("%w: %w", errBulkResponse, err)
	}
	if len(res.Items) != n {
		return nil, fmt.Errorf("%w: %d items for %d writes", errBulkResponse, len(res.Items), n)
	}
	out := make([]runner.WriteResult, n)
	for i, m := range res.Items {
		if len(m) != 1 {
			return nil, fmt.Errorf("%w: item %d has %d actions", errBulkResponse, i, len(m))
		}
		for _, r := range m {
			wr := runner.WriteResult{Code: r.Status, SeqNo: r.SeqNo, PrimaryTerm: r.PrimaryTerm}
			if r.Error != nil {
				wr.Reason = shorten(r.Error.Type+": "+r.Error.Reason, 1000)
			}
			wr.Status = itemStatus(r.Status, wr.Reason)
			out[i] = wr
		}
	}
	return out, nil
}

// itemStatus sorts one item: a failure that comes from the index (a block, a mapping
// that cannot take the fields, the field limit, a missing privilege on it) leaves the
// index out; one that comes from the alert counts against its attempts.
func itemStatus(code int, reason string) runner.ItemStatus {
	switch {
	case code >= 200 && code < 300:
		return runner.ItemWritten
	case code == http.StatusConflict:
		return runner.ItemConflict
	case code == http.StatusNotFound:
		return runner.ItemGone
	case strings.HasPrefix(reason, "cluster_block_exception"), strings.HasPrefix(reason, "index_closed_exception"),
		strings.HasPrefix(reason, "security_exception"), strings.Contains(reason, "Limit of total fields"),
		strings.HasPrefix(reason, "strict_dynamic_mapping_exception"):
		return runner.ItemIndexFailed
	case code == http.StatusTooManyRequests || code >= 500:
		return runner.ItemRetry
	}
	return runner.ItemFailed
}
