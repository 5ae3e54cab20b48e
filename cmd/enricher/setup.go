package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enricher-dev/enricher/dashboards"
	"github.com/enricher-dev/enricher/enrich/config"
	"github.com/enricher-dev/enricher/enrich/elastic"
)

func setupCommand() command {
	return command{summary: "with an administrator's key: map enricher's fields, create the state index, import Kibana objects", run: runSetup}
}

// runSetup does, once and with administrator rights, what the daemon's least-privilege
// key may not: put enricher's field mappings on every alert index the patterns match,
// create the state index, and (with --kibana-url) import the Kibana saved objects.
// --print-role prints the daemon's role instead and changes nothing (it only asks the
// server which it is, unless --server says).
func runSetup(ctx context.Context, e env, args []string) error {
	fs := newFlagSet("setup", e)
	cfgPath := fs.String("config", "", "config file (YAML); the credentials must be an administrator's")
	printRole := fs.String("print-role", "", "print a role descriptor and exit: daemon or setup")
	server := fs.String("server", "", "with --print-role: elasticsearch or opensearch (default: ask the configured server which it is)")
	noPutMapping := fs.Bool("no-put-mapping", false, "with --print-role daemon: a role that cannot change any mapping of the alert indices (run setup again after each rollover)")
	kibanaURL := fs.String("kibana-url", "", "import the Kibana saved objects into this Kibana (e.g. https://kibana:5601)")
	kibanaSpace := fs.String("kibana-space", "default", "Kibana space to import into")
	kibanaCA := fs.String("kibana-ca-file", "", "PEM file of CA certificates to trust for Kibana (default: the system's)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %v", fs.Args())
	}
	cfg, err := loadConfig(*cfgPath, "")
	if err != nil {
		return err
	}
	if *noPutMapping && *printRole != "daemon" {
		return usagef("--no-put-mapping is for --print-role daemon")
	}
	if *printRole != "" {
		return printRoleDescriptor(ctx, e, cfg, *printRole, *server, !*noPutMapping)
	}
	if *server != "" {
		return usagef("--server is for --print-role; setup asks the server which it is")
	}
	log, err := newLogger(e.stderr, "text", "warn")
	if err != nil {
		return err
	}
	rs, err := loadRules(ctx, cfg)
	if err != nil {
		return usageError{err}
	}
	// The plugins are started once to learn the namespaces they write (mapped too).
	parts, err := buildPipeline(ctx, cfg, rs, nil, prometheus.NewRegistry(), log)
	if err != nil {
		return err
	}
	defer parts.close(context.WithoutCancel(ctx))
	client, err := elastic.NewClient(cfg.Elasticsearch, nil)
	if err != nil {
		return usageError{err}
	}
	install := true
	cfg.Output.InstallMappings = &install
	store, state := newStore(client, cfg, parts, log)
	if err := state.Ensure(ctx); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "state index %s: ready\n", state.Index())
	ready, problems, err := store.Prepare(ctx, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "alert indices matching %v: %d mapped\n", cfg.Alerts.Indices, len(ready))
	var errs []error
	for _, p := range problems {
		fmt.Fprintf(e.stdout, "  %s: %s: %s\n", p.Index, p.Reason, p.Detail)
		errs = append(errs, p)
	}
	details := elastic.NewDetails(client, cfg.Output.DetailsIndex, state, log)
	if res, err := details.Publish(ctx, parts.attack); err != nil {
		fmt.Fprintf(e.stdout, "mapping detail index %s: %v\n", details.Index(), err)
		errs = append(errs, err)
	} else {
		fmt.Fprintf(e.stdout, "mapping detail index %s: ready; ruleset %s: %d details written, %d there already\n",
			details.Index(), rs.Version(), res.Written, res.Existing)
	}
	if *kibanaURL != "" {
		hc, err := kibanaHTTPClient(*kibanaCA)
		if err != nil {
			return usageError{err}
		}
		auth := dashboards.KibanaAuth{APIKey: e.getenv("KIBANA_API_KEY"), Username: e.getenv("KIBANA_USERNAME"), Password: e.getenv("KIBANA_PASSWORD")}
		if auth.APIKey == "" && auth.Username == "" {
			auth = dashboards.KibanaAuth{APIKey: cfg.Elasticsearch.APIKey, Username: cfg.Elasticsearch.Username, Password: cfg.Elasticsearch.Password}
		}
		if (auth.APIKey != "" || auth.Username != "") && !strings.HasPrefix(strings.ToLower(*kibanaURL), "https://") {
			return usagef("--kibana-url %s: the administrator's credentials would cross the network in clear text; use https://", *kibanaURL)
		}
		res, err := dashboards.ImportKibana(ctx, hc, *kibanaURL, *kibanaSpace, auth)
		for _, r := range res {
			fmt.Fprintf(e.stdout, "kibana: %s: %d objects imported into space %s\n", r.File, r.Objects, *kibanaSpace)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// printRoleDescriptor prints the role of the daemon or of setup, for Elasticsearch (a
// role descriptor) or OpenSearch (a security plugin role): the server named, else the one
// the configuration points at (GET /, decided even when the credentials are refused).
// When neither is known it prints nothing and fails, so a script redirecting the output
// never gets the other server's role.
func printRoleDescriptor(ctx context.Context, e env, cfg config.Config, which, server string, putMapping bool) error {
	if which != "daemon" && which != "setup" {
		return usagef("--print-role %q: want daemon or setup", which)
	}
	switch server {
	case "elasticsearch", "opensearch":
	case "":
		client, err := elastic.NewClient(cfg.Elasticsearch, nil)
		if err != nil {
			return usageError{err}
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		srv, err := client.Server(ctx)
		if err != nil {
			return fmt.Errorf("could not ask %s which server it is (%w): give --server elasticsearch or --server opensearch",
				strings.Join(cfg.Elasticsearch.URLs, ","), err)
		}
		server = "elasticsearch"
		if srv.Distribution == elastic.DistributionOpenSearch {
			server = "opensearch"
		}
	default:
		return usagef("--server %q: want elasticsearch or opensearch", server)
	}
	ix, state, details := cfg.Alerts.Indices, cfg.Daemon.StateIndex, cfg.Output.DetailsIndex
	var role map[string]any
	switch server + " " + which {
	case "elasticsearch daemon":
		role = elastic.DaemonRole(ix, state, details, putMapping)
	case "elasticsearch setup":
		role = elastic.SetupRole(ix, state, details)
	case "opensearch daemon":
		role = elastic.OpenSearchDaemonRole(ix, state, details, putMapping)
	default:
		role = elastic.OpenSearchSetupRole(ix, state, details)
	}
	b, _ := json.MarshalIndent(role, "", "  ")
	fmt.Fprintln(e.stdout, string(b))
	return nil
}

// kibanaHTTPClient trusts caFile's certificates when given.
func kibanaHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--kibana-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--kibana-ca-file %s: no PEM certificates found", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second,
		// A redirect could carry the Authorization header elsewhere: the import URL is
		// the one given, or nothing.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}
