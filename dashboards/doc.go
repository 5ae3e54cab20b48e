// Package dashboards holds the Kibana saved objects, the Grafana dashboard and the
// Prometheus alerting rules that ship with enricher, and their integration test
// (build tag "integration"; see README.md).
//
// kibana/alerts.ndjson is generated from gen_kibana.go, and opensearch/enricher.ndjson
// (OpenSearch Dashboards) from gen_opensearch.go built with it, so that their nested
// JSON strings stay consistent; edit the generators, then run `go generate ./dashboards`
// (TestGeneratedFilesCurrent checks the files are what the generators write).
package dashboards

//go:generate go run gen_kibana.go gen_opensearch.go -o kibana/alerts.ndjson -opensearch opensearch/enricher.ndjson
