#!/usr/bin/env bash
# The main job on a local default: load sample alerts into the local Elasticsearch, enrich
# them once, and show one enriched T1021.002 alert and a summary. Run through `make demo`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ES=${ELASTICSEARCH_URL:-http://127.0.0.1:9200}
BIN=${ENRICHER_BIN:-bin/enricher}

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "loading sample alerts (Kibana detection alerts, Elastic Defend, Wazuh, Sigma; some malformed)"
"$BIN" sample --count 1000

say "enricher run --once"
"$BIN" run --once --config scripts/demo.yml

# The daemon never refreshes; make its writes visible to the searches below now rather
# than at the next periodic refresh.
curl -fsS -X POST "$ES/.alerts-security.alerts-*,logs-endpoint.alerts-*,wazuh-alerts-*,sigma-alerts-*/_refresh?expand_wildcards=open,hidden" >/dev/null
curl -fsS -X POST "$ES/enricher-mapping-details/_refresh" >/dev/null

say "one enriched Kibana alert for T1021.002 (the fields enricher wrote, under attack_mappings)"
curl -fsS "$ES/.alerts-security.alerts-default/_search?expand_wildcards=open,hidden" \
	-H 'Content-Type: application/json' -d '{
  "size": 1,
  "query": {"bool": {"filter": [
    {"term": {"attack_mappings.techniques": "T1021.002"}},
    {"term": {"attack_mappings.detections.alerts.id": "2019"}}]}},
  "_source": ["kibana.alert.rule.name", "host.name", "user.name", "kibana.alert.workflow_status", "attack_mappings"]
}' | python3 -c '
import json, sys
hit = json.load(sys.stdin)["hits"]["hits"][0]
src = hit["_source"]
am = src["attack_mappings"]
print("alert      ", hit["_id"], "|", src.get("kibana.alert.rule.name"), "| host", src["host"]["name"], "| user", src["user"]["name"])
print("techniques ", ", ".join(am["techniques"]), " inherited from:", ", ".join(am["inherited_from"]) or "-")
for c in am["controls"]:
    print("controls    %s%s: %s" % (", ".join(c["releases"]), " (inherited)" if c.get("inherited") else "", ", ".join(c["id"])))
for d in am["detections"]:
    extra = []
    if d.get("alerts"):  extra.append("alerts " + ", ".join("%s \"%s\"" % (a["id"], a["name"]) for a in d["alerts"]))
    if d.get("queries"): extra.append("queries " + ", ".join("\"%s\"" % q for q in d["queries"]))
    if d.get("events"):  extra.append("events " + ", ".join(e["id"] + (":" + e["logon_type"] if e.get("logon_type") else "") for e in d["events"]))
    print("detection   %-42s %s/%-11s %s" % (d["product"], d["score_category"], d["score_value"], "; ".join(extra)))
print("details    ", ", ".join(am["details"]), "(references into the mapping detail index)")
print("ruleset    ", am["ruleset"]["version"], am["ruleset"]["hash"][:12], "| enriched_at", am["enriched_at"], "| status", am["status"])
'

say "one click away: the mapping details of that reference (comments, references, provenance)"
REF=$(curl -fsS "$ES/.alerts-security.alerts-default/_search?expand_wildcards=open,hidden" -H 'Content-Type: application/json' \
	-d '{"size":1,"query":{"term":{"attack_mappings.techniques":"T1021.002"}},"_source":["attack_mappings.details"]}' |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["hits"]["hits"][0]["_source"]["attack_mappings"]["details"][0])')
curl -fsS "$ES/enricher-mapping-details/_search" -H 'Content-Type: application/json' -d '{
  "size": 100, "query": {"bool": {"filter": [{"term": {"ref": "'"$REF"'"}}, {"term": {"kind": "detection"}}]}}
}' | python3 -c '
import json, sys, textwrap
for h in json.load(sys.stdin)["hits"]["hits"]:
    d = h["_source"]
    print("%-40s %s (ATT&CK %s)" % (d["name"], d["release"], d["attack_version"]))
    if d.get("comments"):
        print(textwrap.indent(textwrap.shorten(d["comments"], 220), "    "))
    for r in d.get("references", [])[:2]:
        print("    " + r)
'

say "all alerts by attack_mappings.status, and skipped values by reason"
curl -fsS "$ES/.alerts-security.alerts-*,logs-endpoint.alerts-*,wazuh-alerts-*,sigma-alerts-*/_search?expand_wildcards=open,hidden" \
	-H 'Content-Type: application/json' -d '{"size":0,"aggs":{
  "status":{"terms":{"field":"attack_mappings.status"}},
  "problems":{"terms":{"field":"attack_mappings.problems.reason"}},
  "revoked":{"terms":{"field":"attack_mappings.revoked.id"}}}}' | python3 -c '
import json, sys
aggs = json.load(sys.stdin)["aggregations"]
for name, agg in aggs.items():
    print("%-9s" % name, ", ".join("%s=%d" % (b["key"], b["doc_count"]) for b in agg["buckets"]) or "-")
'
printf '\nTry KQL in Kibana: attack_mappings.controls.id : "AC-17" and attack_mappings.detections.product : "Microsoft Defender for Identity"\n'
