// Package sample makes realistic alert documents and Kibana-like alert indices for the
// demo, the integration tests and the benchmarks.
//
// The Kibana alerts index is created the way Kibana creates it: a hidden backing index
// .internal.alerts-security.alerts-<space>-000001 behind the hidden write alias
// .alerts-security.alerts-<space>, with "dynamic": false and an index template that
// survives rollover. Documents mix dotted top-level keys ("kibana.alert.rule.threat") with
// nested ECS objects (host{}, user{}), as Kibana writes them. Other sources: Elastic
// Defend (ECS threat.*), Wazuh 4.x alerts (rule.mitre.id), Wazuh 5 findings
// (wazuh.rule.mitre.technique.id) and Sigma-tagged alerts (tags).
package sample

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/enricher-dev/enricher/enrich/elastic"
)

// Index names used by the sample data (Kibana space "default").
const (
	KibanaAlias   = ".alerts-security.alerts-default"
	KibanaBacking = ".internal.alerts-security.alerts-default-000001"
	EndpointIndex = "logs-endpoint.alerts-default-sample"
	WazuhIndex    = "wazuh-alerts-4.x-sample"
	// Wazuh5Index holds Wazuh 5 findings. The Wazuh indexer keeps them in data streams
	// (wazuh-findings-v5-<category>); the sample uses a plain index, which every server
	// can delete again (Elasticsearch's minimal build cannot delete a data stream).
	Wazuh5Index = "wazuh-findings-v5-sample"
	SigmaIndex  = "sigma-alerts-sample"
)

// Indices are the index patterns that cover every sample index.
var Indices = []string{".alerts-security.alerts-*", "logs-endpoint.alerts-*", "wazuh-alerts-*", "wazuh-findings-v5*", "sigma-alerts-*"}

// Doc is one document to index.
type Doc struct {
	Index  string
	ID     string
	Source map[string]any
}

type technique struct {
	tactic, tacticName, parent, parentName, id, name string
}

var techniques = []technique{
	{"TA0008", "Lateral Movement", "T1021", "Remote Services", "T1021.002", "SMB/Windows Admin Shares"},
	{"TA0008", "Lateral Movement", "T1021", "Remote Services", "T1021.002", "SMB/Windows Admin Shares"},
	{"TA0008", "Lateral Movement", "T1021", "Remote Services", "T1021.002", "SMB/Windows Admin Shares"},
	{"TA0002", "Execution", "T1059", "Command and Scripting Interpreter", "T1059.001", "PowerShell"},
	{"TA0006", "Credential Access", "T1003", "OS Credential Dumping", "T1003.001", "LSASS Memory"},
	{"TA0001", "Initial Access", "T1566", "Phishing", "T1566.001", "Spearphishing Attachment"},
	{"TA0008", "Lateral Movement", "T1021", "Remote Services", "", ""},
}

var (
	hosts       = []string{"WS-FIN-014", "WS-HR-203", "DC01", "DC02", "FS-CORP-01", "SQL-PROD-02", "WS-ENG-117", "JUMP-01"}
	users       = []string{"alice", "bob", "svc_backup", "carol.admin", "dave", "erin", "svc_deploy", "frank"}
	rulesByTech = map[string][2]string{
		"T1021.002": {"Potential Lateral Tool Transfer via SMB Share", "58bc134c-e8d2-4291-a552-b4b3e537c60b"},
		"T1059.001": {"Suspicious PowerShell Engine ImageLoad", "852c1f19-68e8-43a6-9dce-340771fe1be3"},
		"T1003.001": {"LSASS Memory Dump Creation", "f2f46686-6f3c-4724-bd7d-24e31c70f98f"},
		"T1566.001": {"Suspicious MS Office Child Process", "a624863f-a70d-417f-a7d2-7a404638d47f"},
		"T1021":     {"Remote Services Anomaly", "1f0a69c0-3392-4adf-b7d5-6012fd292da8"},
	}
)

// Generate returns n documents spread over the sample sources, deterministically for a
// seed but for their times: one every 7 seconds, the last one now, so the newest (the last
// hour's) are the daemon's live path's and the older ones the backfill's. Every 25th
// document carries a malformed technique value (a number, an object, a bad ID) beside a
// valid one; one in 40 carries only malformed values.
func Generate(n int, seed uint64) []Doc {
	return GenerateAt(n, seed, time.Now().UTC().Truncate(time.Second))
}

// GenerateAt is Generate with the time of the last document given.
func GenerateAt(n int, seed uint64, last time.Time) []Doc {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	base := last.Add(-time.Duration(n-1) * 7 * time.Second)
	docs := make([]Doc, 0, n)
	for i := 0; i < n; i++ {
		t := techniques[r.IntN(len(techniques))]
		ts := base.Add(time.Duration(i) * 7 * time.Second)
		host, user := hosts[r.IntN(len(hosts))], users[r.IntN(len(users))]
		var d Doc
		switch i % 10 {
		case 7:
			d = endpoint(i, ts, t, host, user)
		case 8:
			if i%20 == 18 {
				d = wazuh5(i, ts, t, host, user)
			} else {
				d = wazuh(i, ts, t, host, user)
			}
		case 9:
			d = sigma(i, ts, t, host, user)
		default:
			d = kibana(i, ts, t, host, user)
		}
		switch {
		case i%40 == 35:
			malformedOnly(&d)
		case i%25 == 24:
			addMalformed(&d)
		}
		docs = append(docs, d)
	}
	return docs
}

func threatBlock(t technique) []any {
	tech := map[string]any{
		"id": t.parent, "name": t.parentName, "reference": "https://attack.mitre.org/techniques/" + t.parent + "/",
		"subtechnique": []any{},
	}
	if t.id != "" {
		tech["subtechnique"] = []any{map[string]any{
			"id": t.id, "name": t.name,
			"reference": "https://attack.mitre.org/techniques/" + t.parent + "/" + t.id[len(t.parent)+1:] + "/",
		}}
	}
	return []any{map[string]any{
		"framework": "MITRE ATT&CK",
		"tactic":    map[string]any{"id": t.tactic, "name": t.tacticName, "reference": "https://attack.mitre.org/tactics/" + t.tactic + "/"},
		"technique": []any{tech},
	}}
}

func leaf(t technique) string {
	if t.id != "" {
		return t.id
	}
	return t.parent
}

func leafName(t technique) string {
	if t.id != "" {
		return t.name
	}
	return t.parentName
}

func kibana(i int, ts time.Time, t technique, host, user string) Doc {
	rule := rulesByTech[leaf(t)]
	id := fmt.Sprintf("sample-kibana-%06d", i)
	threat := threatBlock(t)
	src := map[string]any{
		"@timestamp":                       ts.Format(time.RFC3339Nano),
		"event.kind":                       "signal",
		"host":                             map[string]any{"name": host, "os": map[string]any{"family": "windows"}},
		"user":                             map[string]any{"name": user, "domain": "CORP"},
		"source":                           map[string]any{"ip": fmt.Sprintf("10.20.%d.%d", i%7, 10+i%200)},
		"kibana.alert.uuid":                id,
		"kibana.alert.status":              "active",
		"kibana.alert.workflow_status":     "open",
		"kibana.alert.severity":            []string{"low", "medium", "high"}[i%3],
		"kibana.alert.risk_score":          []int{21, 47, 73}[i%3],
		"kibana.alert.rule.name":           rule[0],
		"kibana.alert.rule.rule_id":        rule[1],
		"kibana.alert.rule.uuid":           fmt.Sprintf("rule-%s", rule[1][:8]),
		"kibana.alert.rule.category":       "Custom Query Rule",
		"kibana.alert.rule.producer":       "siem",
		"kibana.alert.rule.tags":           []string{"Domain: Endpoint", "OS: Windows", "Tactic: " + t.tacticName},
		"kibana.alert.rule.threat":         threat,
		"kibana.alert.rule.parameters":     map[string]any{"rule_id": rule[1], "threat": threat, "index": []string{"logs-*"}},
		"kibana.alert.reason":              fmt.Sprintf("process event on %s created alert %s.", host, rule[0]),
		"kibana.alert.original_time":       ts.Add(-2 * time.Second).Format(time.RFC3339Nano),
		"kibana.space_ids":                 []string{"default"},
		"kibana.alert.workflow_tags":       []string{},
		"kibana.alert.rule.execution.uuid": fmt.Sprintf("exec-%04d", i/50),
	}
	return Doc{Index: KibanaAlias, ID: id, Source: src}
}

func endpoint(i int, ts time.Time, t technique, host, user string) Doc {
	th := map[string]any{
		"framework": "MITRE ATT&CK",
		"tactic":    map[string]any{"id": []string{t.tactic}, "name": []string{t.tacticName}},
		"technique": map[string]any{"id": []string{t.parent}, "name": []string{t.parentName}},
	}
	if t.id != "" {
		th["technique"].(map[string]any)["subtechnique"] = map[string]any{"id": []string{t.id}, "name": []string{t.name}}
	}
	return Doc{Index: EndpointIndex, ID: fmt.Sprintf("sample-endpoint-%06d", i), Source: map[string]any{
		"@timestamp": ts.Format(time.RFC3339Nano),
		"event":      map[string]any{"kind": "alert", "module": "endpoint", "dataset": "endpoint.alerts"},
		"host":       map[string]any{"name": host},
		"user":       map[string]any{"name": user},
		"rule":       map[string]any{"id": fmt.Sprintf("endpoint-%s", leaf(t)), "name": "Malicious Behavior: " + t.name},
		"threat":     th,
	}}
}

func wazuh(i int, ts time.Time, t technique, host, user string) Doc {
	ids := []string{leaf(t)}
	if leaf(t) == "T1021.002" && i%3 == 0 {
		ids = []string{"T1077"} // revoked ID still used by older Wazuh rules
	}
	// A Wazuh 4.x alert as Filebeat ships it to the Wazuh indexer: the rule's own
	// compliance tags beside ATT&CK (rule.nist_800_53 is what the rule author chose, which
	// CTID's mappings may not share: SI-4 is mapped to T1021.002, AU-14 to none of these).
	return Doc{Index: WazuhIndex, ID: fmt.Sprintf("sample-wazuh-%06d", i), Source: map[string]any{
		"timestamp":  ts.Format("2006-01-02T15:04:05.000-0700"),
		"@timestamp": ts.Format(time.RFC3339Nano),
		"agent":      map[string]any{"name": host, "id": fmt.Sprintf("%03d", i%50), "ip": fmt.Sprintf("10.20.1.%d", 10+i%50)},
		"manager":    map[string]any{"name": "wazuh-manager"},
		"id":         fmt.Sprintf("%d.%d", ts.Unix(), 100000+i),
		"rule": map[string]any{"id": "92652", "level": 12, "description": "Successful remote logon via SMB",
			"firedtimes": 1 + i%17, "mail": false, "groups": []string{"windows", "windows_security", "authentication_success"},
			"mitre":       map[string]any{"id": ids, "tactic": []string{t.tacticName}, "technique": []string{t.name}},
			"nist_800_53": []string{"AC.7", "AU.14", "SI.4"}, "pci_dss": []string{"10.2.5"}, "gdpr": []string{"IV_32.2"},
			"hipaa": []string{"164.312.b"}, "tsc": []string{"CC6.8", "CC7.2", "CC7.3"}},
		"decoder":  map[string]any{"name": "windows_eventchannel"},
		"location": "EventChannel",
		"data": map[string]any{"win": map[string]any{
			"system":    map[string]any{"eventID": "4624", "channel": "Security", "computer": host},
			"eventdata": map[string]any{"targetUserName": user, "logonType": "3"}}},
	}}
}

// wazuh5 is a Wazuh 5 finding as the Wazuh indexer's detectors write it: ECS fields, the
// rule's ATT&CK and compliance mappings under wazuh.rule (technique IDs in
// wazuh.rule.mitre.technique.id, Sigma-style tags in wazuh.rule.tags, one array per
// compliance framework), and a reference to the event it was found in.
func wazuh5(i int, ts time.Time, t technique, host, user string) Doc {
	agent := fmt.Sprintf("%03d", i%50)
	return Doc{Index: Wazuh5Index, ID: fmt.Sprintf("sample-wazuh5-%06d", i), Source: map[string]any{
		"@timestamp": ts.Format(time.RFC3339Nano),
		"event": map[string]any{"kind": "alert", "category": []string{"authentication"}, "type": []string{"start"},
			"action": "logged-in", "outcome": "success", "index": "wazuh-events-v5-access-management",
			"doc_id": fmt.Sprintf("%x", uint64(ts.UnixNano())^uint64(i))},
		"user":   map[string]any{"name": user},
		"source": map[string]any{"ip": fmt.Sprintf("10.20.2.%d", 10+i%200)},
		"wazuh": map[string]any{
			"rule": map[string]any{
				"id": "8e2c2f5a-6d1e-4b8f-9a57-3c1d2e4f5a60", "title": rulesByTech[leaf(t)][0],
				"level": "high", "status": "stable",
				"tags": []string{"attack." + toLowerDash(t.tacticName), "attack." + lower(leaf(t))},
				"mitre": map[string]any{
					"tactic":    map[string]any{"id": []string{t.tactic}, "name": []string{t.tacticName}},
					"technique": map[string]any{"id": []string{leaf(t)}, "name": []string{leafName(t)}},
				},
				// The rule author's compliance tags; CTID maps AC-17 and SI-4 to T1021.002, not AU-14.
				"compliance": map[string]any{"nist_800_53": []string{"AC-17", "AU-14", "SI-4"}, "pci_dss": []string{"10.2.5"},
					"gdpr": []string{"IV_32.2"}, "hipaa": []string{"164.312.b"}, "tsc": []string{"CC6.8", "CC7.2"}},
			},
			"integration": map[string]any{"name": "windows", "category": "access-management", "decoders": []string{"windows-event"}},
			"agent": map[string]any{"id": agent, "name": host, "version": "v5.0.0", "groups": []string{"default", "windows"},
				"host": map[string]any{"hostname": host, "architecture": "x86_64",
					"os": map[string]any{"name": "Microsoft Windows Server 2022", "platform": "windows", "type": "windows"}}},
			"cluster": map[string]any{"name": "wazuh", "node": "node01"},
		},
	}}
}

func sigma(i int, ts time.Time, t technique, host, user string) Doc {
	return Doc{Index: SigmaIndex, ID: fmt.Sprintf("sample-sigma-%06d", i), Source: map[string]any{
		"@timestamp": ts.Format(time.RFC3339Nano),
		"host":       map[string]any{"name": host},
		"user":       map[string]any{"name": user},
		"rule":       map[string]any{"name": "Sigma: " + t.name},
		"tags":       []string{"attack." + toLowerDash(t.tacticName), "attack." + lower(leaf(t))},
	}}
}

func addMalformed(d *Doc) {
	switch d.Index {
	case KibanaAlias:
		// Mapped keyword fields take numbers (kept as numbers in _source); objects can only
		// sit in unmapped fields, such as rule.mitre.id in Kibana's index.
		d.Source["threat"] = map[string]any{"technique": map[string]any{"id": []any{42, "T10"}}}
		d.Source["rule"] = map[string]any{"mitre": map[string]any{"id": []any{map[string]any{"id": "T1021.002"}}}}
	default:
		d.Source["tags"] = []any{"attack.t1021.00x", 7}
	}
}

func malformedOnly(d *Doc) {
	if d.Index == KibanaAlias {
		d.Source["kibana.alert.rule.threat"] = []any{map[string]any{"framework": "MITRE ATT&CK",
			"technique": []any{map[string]any{"id": 1021, "subtechnique": []any{map[string]any{"id": true}}}}}}
		delete(d.Source, "kibana.alert.rule.parameters")
		return
	}
	d.Source["tags"] = []any{"attack.t1021.2"}
	delete(d.Source, "threat")
	delete(d.Source, "rule")
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }

func toLowerDash(s string) string {
	return string(bytes.ReplaceAll(bytes.ToLower([]byte(s)), []byte(" "), []byte("-")))
}

// kibanaMappings is a subset of Kibana's alert mappings: "dynamic": false, as Kibana sets it.
func kibanaMappings() map[string]any {
	kw := map[string]any{"type": "keyword"}
	return map[string]any{
		"dynamic": false,
		"properties": map[string]any{
			"@timestamp": map[string]any{"type": "date"},
			"event":      map[string]any{"properties": map[string]any{"kind": kw, "action": kw, "category": kw}},
			"host":       map[string]any{"properties": map[string]any{"name": kw, "os": map[string]any{"properties": map[string]any{"family": kw}}}},
			"user":       map[string]any{"properties": map[string]any{"name": kw, "domain": kw}},
			"source":     map[string]any{"properties": map[string]any{"ip": map[string]any{"type": "ip"}}},
			"tags":       kw,
			"threat": map[string]any{"properties": map[string]any{
				"framework": kw,
				"tactic":    map[string]any{"properties": map[string]any{"id": kw, "name": kw}},
				"technique": map[string]any{"properties": map[string]any{"id": kw, "name": kw,
					"subtechnique": map[string]any{"properties": map[string]any{"id": kw, "name": kw}}}},
			}},
			"kibana": map[string]any{"properties": map[string]any{
				"space_ids": kw,
				"alert": map[string]any{"properties": map[string]any{
					"uuid": kw, "status": kw, "workflow_status": kw, "workflow_tags": kw, "severity": kw,
					"risk_score":    map[string]any{"type": "float"},
					"reason":        map[string]any{"type": "keyword"},
					"original_time": map[string]any{"type": "date"},
					"rule": map[string]any{"properties": map[string]any{
						"name": kw, "rule_id": kw, "uuid": kw, "category": kw, "producer": kw, "tags": kw,
						"parameters": map[string]any{"type": "flattened", "ignore_above": 4096},
						"execution":  map[string]any{"properties": map[string]any{"uuid": kw}},
						"threat": map[string]any{"properties": map[string]any{
							"framework": kw,
							"tactic":    map[string]any{"properties": map[string]any{"id": kw, "name": kw, "reference": kw}},
							"technique": map[string]any{"properties": map[string]any{"id": kw, "name": kw, "reference": kw,
								"subtechnique": map[string]any{"properties": map[string]any{"id": kw, "name": kw, "reference": kw}}}},
						}},
					}},
				}},
			}},
		},
	}
}

// KibanaSpace names the Kibana alert indices of one space.
type KibanaSpace string

// Alias is the write alias, .alerts-security.alerts-<space>.
func (s KibanaSpace) Alias() string { return ".alerts-security.alerts-" + string(s) }

// Backing is the first backing index, .internal.alerts-security.alerts-<space>-000001.
func (s KibanaSpace) Backing() string {
	return ".internal.alerts-security.alerts-" + string(s) + "-000001"
}

// Template is the name of the index template Kibana installs for the space.
func (s KibanaSpace) Template() string {
	return ".alerts-security.alerts-" + string(s) + "-index-template"
}

// Setup creates the sample indices if missing: the Kibana-like alerts index (hidden,
// "dynamic": false, behind its alias, with an index template for rollover) and plain
// indices for the other sources. It is idempotent.
func Setup(ctx context.Context, c *elastic.Client) error {
	if err := SetupKibana(ctx, c, "default"); err != nil {
		return err
	}
	for _, ix := range []string{EndpointIndex, WazuhIndex, Wazuh5Index, SigmaIndex} {
		code, _, err := c.Do(ctx, "other", http.MethodHead, "/"+ix, nil, nil)
		if err != nil {
			return err
		}
		if code == http.StatusNotFound {
			if err := put(ctx, c, "/"+ix, map[string]any{"settings": sampleSettings()}, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// sampleSettings are the sample indices' settings: one shard, and one replica where
// there is a node to hold it (none on a single node, which stays green; one on the
// three-node cluster of make cluster-up).
func sampleSettings() map[string]any {
	return map[string]any{"number_of_shards": 1, "auto_expand_replicas": "0-1"}
}

// SetupKibana creates a Kibana-like alerts index for one space, the way Kibana does:
// an index template, then a hidden backing index behind a hidden write alias.
func SetupKibana(ctx context.Context, c *elastic.Client, space KibanaSpace) error {
	tmpl := map[string]any{
		"index_patterns": []string{".internal.alerts-security.alerts-" + string(space) + "-*"},
		"priority":       100,
		"template": map[string]any{
			"settings": func() map[string]any {
				st := sampleSettings()
				st["index.hidden"], st["index.mapping.total_fields.limit"] = true, 1700
				return st
			}(),
			"mappings": kibanaMappings(),
		},
	}
	if err := put(ctx, c, "/_index_template/"+url.PathEscape(space.Template()), tmpl, nil); err != nil {
		return err
	}
	code, _, err := c.Do(ctx, "other", http.MethodHead, "/"+url.PathEscape(space.Alias()), url.Values{"expand_wildcards": {"all"}}, nil)
	if err != nil {
		return err
	}
	if code == http.StatusNotFound {
		body := map[string]any{"aliases": map[string]any{space.Alias(): map[string]any{"is_write_index": true, "is_hidden": true}}}
		if err := put(ctx, c, "/"+url.PathEscape(space.Backing()), body, nil); err != nil {
			return err
		}
	}
	return nil
}

func put(ctx context.Context, c *elastic.Client, path string, body any, q url.Values) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	code, resp, err := c.Do(ctx, "other", http.MethodPut, path, q, b)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("PUT %s: status %d: %s", path, code, resp)
	}
	return nil
}

// Load indexes docs with _bulk (create or overwrite by ID) and refreshes the indices
// written to.
func Load(ctx context.Context, c *elastic.Client, docs []Doc) error {
	const chunk = 2000
	var written []string
	seen := map[string]bool{}
	for _, d := range docs {
		if !seen[d.Index] {
			seen[d.Index] = true
			written = append(written, d.Index)
		}
	}
	for start := 0; start < len(docs); start += chunk {
		var buf bytes.Buffer
		for _, d := range docs[start:min(start+chunk, len(docs))] {
			meta, _ := json.Marshal(map[string]any{"index": map[string]any{"_index": d.Index, "_id": d.ID}})
			buf.Write(meta)
			buf.WriteByte('\n')
			b, err := json.Marshal(d.Source)
			if err != nil {
				return err
			}
			buf.Write(b)
			buf.WriteByte('\n')
		}
		code, resp, err := c.Do(ctx, "bulk", http.MethodPost, "/_bulk", nil, buf.Bytes())
		if err != nil {
			return err
		}
		var r struct {
			Errors bool                         `json:"errors"`
			Items  []map[string]json.RawMessage `json:"items"`
		}
		if code != http.StatusOK || json.Unmarshal(resp, &r) != nil {
			return fmt.Errorf("load sample alerts: status %d: %.500s", code, resp)
		}
		if r.Errors {
			for _, it := range r.Items {
				if b := it["index"]; bytes.Contains(b, []byte(`"error"`)) {
					return fmt.Errorf("load sample alerts: %s", b)
				}
			}
		}
	}
	if len(written) == 0 {
		return nil
	}
	return Refresh(ctx, c, written)
}

// Refresh makes recent writes on the index patterns visible to search (tests, the demo;
// the daemon never refreshes).
func Refresh(ctx context.Context, c *elastic.Client, indices []string) error {
	q := url.Values{"expand_wildcards": {"open,hidden"}, "ignore_unavailable": {"true"}, "allow_no_indices": {"true"}}
	parts := make([]string, len(indices))
	for i, ix := range indices {
		parts[i] = url.PathEscape(ix)
	}
	code, body, err := c.Do(ctx, "other", http.MethodPost, "/"+strings.Join(parts, ",")+"/_refresh", q, nil)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("refresh: status %d: %s", code, body)
	}
	return nil
}
