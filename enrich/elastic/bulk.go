package elastic

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/enricher-dev/enricher/enrich"
)

// ItemStatus sorts one bulk item's result.
type ItemStatus int

// Bulk item results.
const (
	ItemUpdated  ItemStatus = iota // 200/201 updated
	ItemNoop                       // 200, document already held these values
	ItemConflict                   // 409: changed since read; re-read and retry
	ItemRetry                      // 429 or 5xx: retry with backoff
	ItemNotFound                   // 404: deleted since read
	ItemFailed                     // any other 4xx: counted failed, the rest goes on
)

func (s ItemStatus) String() string {
	return [...]string{"updated", "noop", "conflict", "retry", "not_found", "failed"}[s]
}

// BulkItem is one partial update.
type BulkItem struct {
	Alert *enrich.Alert
	Doc   map[string]any
}

// ItemResult is the outcome of one bulk item.
type ItemResult struct {
	Status ItemStatus
	Code   int
	Reason string // error type and reason, for failed items
}

// BulkUpdate sends partial updates in one _bulk request, each guarded by the alert's
// seq_no and primary term when known, and sorts every item by its result. An error means
// the request as a whole failed (wrapped ErrUnavailable when worth retrying).
func (c *Client) BulkUpdate(ctx context.Context, items []BulkItem) ([]ItemResult, error) {
	if len(items) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	buf.Grow(len(items) * 2048)
	var scratch []byte
	for _, it := range items {
		a := it.Alert
		buf.WriteString(`{"update":{"_index":`)
		writeJSONString(&buf, a.Index)
		buf.WriteString(`,"_id":`)
		writeJSONString(&buf, a.ID)
		if a.PrimaryTerm > 0 {
			buf.WriteString(`,"if_seq_no":`)
			buf.WriteString(strconv.FormatInt(a.SeqNo, 10))
			buf.WriteString(`,"if_primary_term":`)
			buf.WriteString(strconv.FormatInt(a.PrimaryTerm, 10))
		}
		buf.WriteString("}}\n{\"doc\":")
		var err error
		if scratch, err = appendDoc(scratch[:0], it.Doc); err != nil {
			return nil, fmt.Errorf("encode update of %s/%s: %w", a.Index, a.ID, err)
		}
		buf.Write(scratch)
		buf.WriteString("}\n")
	}
	code, body, err := c.Do(ctx, "bulk", http.MethodPost, "/_bulk", nil, buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("bulk update: %w", err)
	}
	if code != http.StatusOK {
		return nil, statusError("bulk update", code, body)
	}
	var res struct {
		Items []map[string]struct {
			Status int    `json:"status"`
			Result string `json:"result"`
			Error  *struct {
				Type   string `json:"type"`
				Reason string `json:"reason"`
			} `json:"error"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("decode bulk response: %w", err)
	}
	if len(res.Items) != len(items) {
		return nil, fmt.Errorf("bulk response has %d items for %d updates", len(res.Items), len(items))
	}
	out := make([]ItemResult, len(items))
	for i, m := range res.Items {
		r := m["update"]
		ir := ItemResult{Code: r.Status}
		switch {
		case r.Status >= 200 && r.Status < 300:
			ir.Status = ItemUpdated
			if r.Result == "noop" {
				ir.Status = ItemNoop
			}
		case r.Status == http.StatusConflict:
			ir.Status = ItemConflict
		case r.Status == http.StatusTooManyRequests || r.Status >= 500:
			ir.Status = ItemRetry
		case r.Status == http.StatusNotFound:
			ir.Status = ItemNotFound
		default:
			ir.Status = ItemFailed
		}
		if r.Error != nil {
			ir.Reason = r.Error.Type + ": " + r.Error.Reason
		}
		out[i] = ir
	}
	return out, nil
}

func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s)
	buf.Write(b)
}

// appendDoc encodes a partial document: values that encode themselves (enrich.JSONAppender)
// are appended as they are, the rest go through encoding/json.
func appendDoc(dst []byte, doc map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		kb, _ := json.Marshal(k)
		dst = append(dst, kb...)
		dst = append(dst, ':')
		if a, ok := doc[k].(enrich.JSONAppender); ok {
			dst = a.AppendJSON(dst)
			continue
		}
		b, err := json.Marshal(doc[k])
		if err != nil {
			return dst, err
		}
		dst = append(dst, b...)
	}
	return append(dst, '}'), nil
}
