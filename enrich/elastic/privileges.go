package elastic

import "strings"

// Privileges of the two roles enricher's work is split into: setup (run once, with an
// administrator's key) and the daemon (read and update alerts, nothing else).

// backingPatterns adds, for each Kibana alerts alias or pattern (.alerts-*), the pattern
// of its concrete backing indices (.internal.alerts-…-000001), and for any other pattern
// that of the backing indices of data streams it matches (.ds-…: Elastic Defend's
// logs-endpoint.alerts-*, Wazuh 5's wazuh-findings-v5*): writes go to the hit's _index,
// and privileges on an alias or a data stream do not cover its indices.
func backingPatterns(patterns []string) []string {
	out := make([]string, 0, 2*len(patterns))
	for _, p := range patterns {
		out = append(out, p)
		switch {
		case strings.HasPrefix(p, ".alerts-"):
			b := ".internal" + p
			if !strings.HasSuffix(b, "*") {
				b += "-*"
			}
			out = append(out, b)
		case !strings.HasPrefix(p, "."):
			b := ".ds-" + p
			if !strings.HasSuffix(b, "*") {
				b += "-*"
			}
			out = append(out, b)
		}
	}
	return out
}

// DaemonRole is the role descriptor (the body of PUT _security/role/<name>, or one entry
// of an API key's role_descriptors) for the daemon: search, point in time and update of
// the alerts; its state documents and the mapping detail index, whose documents of old
// rulesets it also deletes. It cannot delete an index or an alert, read an index outside
// the patterns, create an index or change settings. On the alerts it holds read and
// view_index_metadata and, by action name, the bulk index of documents and (putMapping)
// the put-mapping action, so that it maps its fields on rolled-over indices itself.
// Without putMapping it cannot change any mapping of the alert indices, and an index
// `enricher setup` has not mapped yet is left out (named, retried) until setup runs again.
func DaemonRole(alertPatterns []string, stateIndex, detailsIndex string, putMapping bool) map[string]any {
	alerts := append([]string{"read", "view_index_metadata"}, alertWriteActions(putMapping)...)
	return map[string]any{
		"cluster": []string{},
		"indices": []any{
			map[string]any{"names": backingPatterns(alertPatterns), "privileges": alerts},
			map[string]any{"names": []string{stateIndex}, "privileges": []string{"read", "index", "delete", "view_index_metadata"},
				"allow_restricted_indices": false},
			// Details are only ever created (create-only bulk), and removed with their ruleset;
			// a newer enricher maps the fields it adds to them.
			map[string]any{"names": []string{detailsIndex}, "privileges": []string{"read", "create_doc", "delete", "view_index_metadata", "indices:admin/mapping/put"}},
		},
	}
}

// SetupRole is the role `enricher setup` needs: read and put mappings on the alert
// indices (the put-mapping action by name, not manage, which could delete them), create
// the state and mapping detail indices and write the details of the ruleset.
func SetupRole(alertPatterns []string, stateIndex, detailsIndex string) map[string]any {
	return map[string]any{
		"cluster": []string{},
		"indices": []any{
			map[string]any{"names": backingPatterns(alertPatterns), "privileges": []string{"view_index_metadata", "indices:admin/mapping/put"}},
			map[string]any{"names": []string{stateIndex, detailsIndex}, "privileges": []string{"read", "index", "delete", "view_index_metadata", "create_index"}},
		},
	}
}

// alertWriteActions are what the daemon's guarded bulk index of an alert needs, by action
// name, on Elasticsearch and OpenSearch alike: the bulk request and its shard requests,
// the index operation of each item, and (putMapping) the put-mapping action and the
// dynamic mapping update a write may make (auto_put: only with output.install_mappings
// false, where enricher's root is left to dynamic mapping; OpenSearch checks it as put).
// The index privilege (or action group) would also grant updates and put mapping unasked.
func alertWriteActions(putMapping bool) []string {
	a := []string{"indices:data/write/bulk*", "indices:data/write/index*"}
	if putMapping {
		a = append(a, "indices:admin/mapping/put", "indices:admin/mapping/auto_put")
	}
	return a
}

// OpenSearchDaemonRole is DaemonRole for OpenSearch's security plugin: the body of PUT
// _plugins/_security/api/roles/<name>, mapped to the daemon's user with
// _plugins/_security/api/rolesmapping/<name>. The plugin evaluates _bulk and _mget as
// cluster actions before it checks each item's index, so those two are granted by name
// at the cluster level. On the alerts: the plugin's read group (search, point in time,
// get, resolve), the mapping check, and the write actions by name as on Elasticsearch
// (putMapping likewise); on its own two indices the plugin's index and delete groups
// (documents only). Nothing lets it delete or create an index, or change settings or
// aliases.
func OpenSearchDaemonRole(alertPatterns []string, stateIndex, detailsIndex string, putMapping bool) map[string]any {
	alerts := append([]string{"read", "indices:admin/mappings/get"}, alertWriteActions(putMapping)...)
	return map[string]any{
		"cluster_permissions": []string{"indices:data/read/mget", "indices:data/write/bulk"},
		"index_permissions": []any{
			osIndexPermission(backingPatterns(alertPatterns), alerts...),
			osIndexPermission([]string{stateIndex}, "read", "index", "delete", "indices:admin/mappings/get"),
			osIndexPermission([]string{detailsIndex}, "read", "index", "delete", "indices:admin/mappings/get"),
		},
	}
}

// OpenSearchSetupRole is SetupRole for OpenSearch's security plugin.
func OpenSearchSetupRole(alertPatterns []string, stateIndex, detailsIndex string) map[string]any {
	return map[string]any{
		"cluster_permissions": []string{"indices:data/read/mget", "indices:data/write/bulk"},
		"index_permissions": []any{
			osIndexPermission(backingPatterns(alertPatterns), "indices:admin/mappings/get", "indices:admin/mapping/put", "indices:admin/resolve/index"),
			osIndexPermission([]string{stateIndex, detailsIndex}, "read", "index", "delete", "create_index", "indices:admin/mappings/get"),
		},
	}
}

func osIndexPermission(patterns []string, actions ...string) map[string]any {
	return map[string]any{"index_patterns": patterns, "allowed_actions": actions}
}
