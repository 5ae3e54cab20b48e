package assetinventory_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/enricher-dev/enricher/enrich"
	"github.com/enricher-dev/enricher/plugin/examples/assetinventory"
)

func TestReadInventory(t *testing.T) {
	for _, tc := range []struct {
		name, csv string
		want      []assetinventory.Asset
		wantErr   string
	}{
		{name: "columns in any order, extra ignored, blank host skipped",
			csv:  "Owner,HOSTNAME,extra,criticality\nalice,ws1,x,high\nbob,,y,low\n",
			want: []assetinventory.Asset{{Host: "ws1", Owner: "alice", Criticality: "high"}}},
		{name: "comments and BOM", csv: "\ufeffhostname,business_unit\n# retired: old1\nsrv,IT\n",
			want: []assetinventory.Asset{{Host: "srv", BusinessUnit: "IT"}}},
		{name: "short rows", csv: "hostname,criticality,owner\nsrv\n", want: []assetinventory.Asset{{Host: "srv"}}},
		{name: "no hostname column", csv: "host,criticality\nsrv,high\n", wantErr: "no hostname column"},
		{name: "empty", csv: "", wantErr: "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := assetinventory.ReadInventory(strings.NewReader(tc.csv))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      map[string]any
		want    assetinventory.Config
		wantErr string
	}{
		{name: "defaults", in: map[string]any{"inventory": "/x.csv"},
			want: assetinventory.Config{Inventory: "/x.csv", Namespace: "asset", CrashAfterCalls: -1, HangAfterCalls: -1}},
		{name: "all keys, JSON numbers", in: map[string]any{"inventory": "/x.csv", "namespace": "cmdb", "unknown_criticality": "unknown",
			"crash_after_calls": json.Number("2"), "hang_after_calls": float64(0), "write_outside_namespace": true},
			want: assetinventory.Config{Inventory: "/x.csv", Namespace: "cmdb", UnknownCriticality: "unknown",
				CrashAfterCalls: 2, HangAfterCalls: 0, WriteOutsideNamespace: true}},
		{name: "missing inventory", in: map[string]any{}, wantErr: "config.inventory: must be set"},
		{name: "unknown key", in: map[string]any{"inventory": "/x", "invntory": "/x"}, wantErr: "config.invntory: unknown key"},
		{name: "dotted namespace", in: map[string]any{"inventory": "/x", "namespace": "a.b"}, wantErr: "config.namespace"},
		{name: "bad knob", in: map[string]any{"inventory": "/x", "crash_after_calls": 1.5}, wantErr: "config.crash_after_calls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := assetinventory.ParseConfig(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %+v, %v, want %+v", got, err, tc.want)
			}
		})
	}
}

func TestEnrich(t *testing.T) {
	src := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		src  map[string]any
		want enrich.Patch
	}{
		{name: "host.name, case-insensitive", src: src("host", map[string]any{"name": "DC01.corp.example.com"}),
			want: enrich.Patch{"asset": map[string]any{"host": "dc01.corp.example.com", "criticality": "critical", "owner": "it-infra@example.com", "business_unit": "IT", "matched_on": "host.name"}}},
		{name: "dotted key", src: src("host.name", "build-agent-7"),
			want: enrich.Patch{"asset": map[string]any{"host": "build-agent-7", "criticality": "low", "business_unit": "Engineering", "matched_on": "host.name"}}},
		{name: "falls back to host.hostname", src: src("host", map[string]any{"name": "nope", "hostname": "web01"}),
			want: enrich.Patch{"asset": map[string]any{"host": "web01", "criticality": "medium", "owner": "bob@example.com", "business_unit": "E-commerce", "matched_on": "host.hostname"}}},
		{name: "short name matches FQDN entry", src: src("host.name", "ws-0142"),
			want: enrich.Patch{"asset": map[string]any{"host": "WS-0142.corp.example.com", "criticality": "high", "owner": "alice@example.com", "business_unit": "Finance", "matched_on": "host.name"}}},
		{name: "FQDN matches short entry", src: src("host.name", "WEB01.shop.example.com"),
			want: enrich.Patch{"asset": map[string]any{"host": "web01", "criticality": "medium", "owner": "bob@example.com", "business_unit": "E-commerce", "matched_on": "host.name"}}},
		{name: "FQDN in another domain does not match", src: src("host.name", "ws-0142.dmz.example.com"), want: nil},
		{name: "array of names", src: src("host", map[string]any{"name": []any{"x", "WEB01"}}),
			want: enrich.Patch{"asset": map[string]any{"host": "web01", "criticality": "medium", "owner": "bob@example.com", "business_unit": "E-commerce", "matched_on": "host.name"}}},
		{name: "no match", src: src("host.name", "laptop-99"), want: nil},
		{name: "no host field", src: src("user.name", "alice"), want: nil},
		{name: "unknown criticality", cfg: map[string]any{"unknown_criticality": "unknown"}, src: src("host.name", "laptop-99"),
			want: enrich.Patch{"asset": map[string]any{"criticality": "unknown", "matched_on": "none"}}},
		{name: "configured namespace", cfg: map[string]any{"namespace": "cmdb"}, src: src("host.name", "web01"),
			want: enrich.Patch{"cmdb": map[string]any{"host": "web01", "criticality": "medium", "owner": "bob@example.com", "business_unit": "E-commerce", "matched_on": "host.name"}}},
		{name: "test knob: write outside namespace", cfg: map[string]any{"write_outside_namespace": true}, src: src("host.name", "web01"),
			want: enrich.Patch{
				"asset": map[string]any{"host": "web01", "criticality": "medium", "owner": "bob@example.com", "business_unit": "E-commerce", "matched_on": "host.name"},
				"host":  map[string]any{"criticality": "medium"},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := map[string]any{"inventory": "testdata/inventory.csv"}
			for k, v := range tc.cfg {
				cfg[k] = v
			}
			p := assetinventory.New(nil)
			if err := p.Configure(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			got, err := p.Enrich(context.Background(), []*enrich.Alert{{ID: "a", Source: tc.src}})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, []enrich.Patch{tc.want}) {
				t.Errorf("got %v, want %v", got[0], tc.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	p := assetinventory.New(nil)
	if err := p.Configure(context.Background(), map[string]any{"inventory": "testdata/inventory.csv"}); err != nil {
		t.Fatal(err)
	}
	info, err := p.Describe(context.Background())
	if err != nil || info.Namespace != "asset" || !reflect.DeepEqual(info.Fields, []string{"host.name", "host.hostname"}) {
		t.Errorf("info = %+v, %v", info, err)
	}
}

func TestShortNameMustBeUnique(t *testing.T) {
	inv := filepath.Join(t.TempDir(), "inventory.csv")
	csv := "hostname,criticality\nws-1.corp.example.com,high\nws-1.dmz.example.com,low\nweb02.corp.example.com,medium\nWEB02.corp.example.com,medium\n"
	if err := os.WriteFile(inv, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	p := assetinventory.New(nil)
	if err := p.Configure(context.Background(), map[string]any{"inventory": inv}); err != nil {
		t.Fatal(err)
	}
	got, err := p.Enrich(context.Background(), []*enrich.Alert{
		{ID: "ambiguous", Source: map[string]any{"host.name": "ws-1"}},
		{ID: "same host listed twice", Source: map[string]any{"host.name": "web02"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != nil {
		t.Errorf("ambiguous short name ws-1 matched %v", got[0])
	}
	if got[1] == nil {
		t.Errorf("web02 (one host, listed twice) did not match")
	}
}
