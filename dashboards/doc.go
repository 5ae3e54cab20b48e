// Package dashboards holds the Kibana saved objects, the Grafana dashboard and the
// Prometheus alerting rules that ship with enricher, and their integration test
// (build tag "integration"; see README.md).
//
// kibana/alerts.ndjson is generated from gen_kibana.go so that its nested JSON strings
// stay consistent; edit the generator, then run `go generate ./dashboards`.
package dashboards

//go:generate go run gen_kibana.go -o kibana/alerts.ndjson
