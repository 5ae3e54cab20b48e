package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/plugin/pluginv1"
)

// Converters between the wire messages (pluginv1) and the types plugin authors and the
// pipeline see (enrich.Alert, enrich.Patch, Info). Every field of every message is
// converted both ways; convert_test.go checks that by reflection.
//
// JSON objects are decoded with json.Number for numbers so that 64-bit integers keep
// their precision end to end.

func alertToProto(a *enrich.Alert) (*pluginv1.Alert, error) {
	src, err := encodeObject(a.Source)
	if err != nil {
		return nil, fmt.Errorf("encode source of alert %s: %w", a.ID, err)
	}
	return &pluginv1.Alert{
		Id:          a.ID,
		Index:       a.Index,
		SeqNo:       a.SeqNo,
		PrimaryTerm: a.PrimaryTerm,
		SourceJson:  src,
	}, nil
}

func alertFromProto(p *pluginv1.Alert) (*enrich.Alert, error) {
	src, err := decodeObject(p.GetSourceJson())
	if err != nil {
		return nil, fmt.Errorf("decode source of alert %s: %w", p.GetId(), err)
	}
	if src == nil {
		src = map[string]any{}
	}
	return &enrich.Alert{
		ID:          p.GetId(),
		Index:       p.GetIndex(),
		SeqNo:       p.GetSeqNo(),
		PrimaryTerm: p.GetPrimaryTerm(),
		Source:      src,
	}, nil
}

func patchToProto(p enrich.Patch) (*pluginv1.Patch, error) {
	if p == nil {
		return &pluginv1.Patch{}, nil
	}
	b, err := json.Marshal(map[string]any(p))
	if err != nil {
		return nil, err
	}
	return &pluginv1.Patch{Json: b}, nil
}

func patchFromProto(p *pluginv1.Patch) (enrich.Patch, error) {
	m, err := decodeObject(p.GetJson())
	if err != nil || m == nil {
		return nil, err
	}
	return enrich.Patch(m), nil
}

func infoToProto(i Info) *pluginv1.DescribeResponse {
	return &pluginv1.DescribeResponse{
		Name:      i.Name,
		Version:   i.Version,
		Namespace: i.Namespace,
		Fields:    append([]string(nil), i.Fields...),
	}
}

func infoFromProto(p *pluginv1.DescribeResponse) Info {
	return Info{
		Name:      p.GetName(),
		Version:   p.GetVersion(),
		Namespace: p.GetNamespace(),
		Fields:    append([]string(nil), p.GetFields()...),
	}
}

func configToProto(cfg map[string]any) (*pluginv1.ConfigureRequest, error) {
	b, err := encodeObject(cfg)
	if err != nil {
		return nil, err
	}
	return &pluginv1.ConfigureRequest{ConfigJson: b}, nil
}

func configFromProto(p *pluginv1.ConfigureRequest) (map[string]any, error) {
	m, err := decodeObject(p.GetConfigJson())
	if m == nil && err == nil {
		m = map[string]any{}
	}
	return m, err
}

func enrichRequestToProto(alerts []*enrich.Alert) (*pluginv1.EnrichRequest, error) {
	req := &pluginv1.EnrichRequest{Alerts: make([]*pluginv1.Alert, len(alerts))}
	for i, a := range alerts {
		pa, err := alertToProto(a)
		if err != nil {
			return nil, err
		}
		req.Alerts[i] = pa
	}
	return req, nil
}

func enrichRequestFromProto(req *pluginv1.EnrichRequest) ([]*enrich.Alert, error) {
	alerts := make([]*enrich.Alert, len(req.GetAlerts()))
	for i, pa := range req.GetAlerts() {
		a, err := alertFromProto(pa)
		if err != nil {
			return nil, err
		}
		alerts[i] = a
	}
	return alerts, nil
}

func enrichResponseToProto(patches []enrich.Patch) (*pluginv1.EnrichResponse, error) {
	resp := &pluginv1.EnrichResponse{Patches: make([]*pluginv1.Patch, len(patches))}
	for i, p := range patches {
		pp, err := patchToProto(p)
		if err != nil {
			return nil, fmt.Errorf("encode patch %d: %w", i, err)
		}
		resp.Patches[i] = pp
	}
	return resp, nil
}

func enrichResponseFromProto(resp *pluginv1.EnrichResponse) ([]enrich.Patch, error) {
	patches := make([]enrich.Patch, len(resp.GetPatches()))
	for i, pp := range resp.GetPatches() {
		p, err := patchFromProto(pp)
		if err != nil {
			return nil, fmt.Errorf("%w: patch %d: %w", ErrBadResponse, i, err)
		}
		patches[i] = p
	}
	return patches, nil
}

// encodeObject writes m as a JSON object; nil becomes "{}".
func encodeObject(m map[string]any) ([]byte, error) {
	if m == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(m)
}

// decodeObject reads one JSON object (numbers as json.Number). Empty input and "null"
// give a nil map; anything but an object is an error.
func decodeObject(b []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a JSON object: trailing data")
	}
	return m, nil
}

// project keeps only the given field paths of a _source document, as a flat object of
// dotted path -> value (one value: the value; several: an array). With no fields it
// returns src unchanged. enrich.Values reads the result the same as the original.
func project(src map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return src
	}
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		switch vs := enrich.Values(src, f); len(vs) {
		case 0:
		case 1:
			out[f] = vs[0]
		default:
			out[f] = vs
		}
	}
	return out
}
