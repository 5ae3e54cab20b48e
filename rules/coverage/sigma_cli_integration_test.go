//go:build integration

package coverage

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/enricher-dev/enricher/rules"
)

// sigmaATTACK is a compact ATT&CK Enterprise 16.1 technique list (active techniques only).
var sigmaATTACK = filepath.Join("data", "mappings", "attack", "mitre_attack_enterprise_16.1.json") // in ../shared

// runSigmaAnalyze runs `sigma analyze attack count` on dir and returns the score per technique.
// sigma-cli needs ATT&CK STIX data, which it downloads from GitHub; offline, the test feeds it
// a minimal STIX bundle built from the shared 16.1 technique list (IDs and names, one
// placeholder tactic each, so every technique is emitted exactly once) through
// `sigma pysigma update-cache --url mitre_attack:FILE`, with HOME pointed at a temp dir so
// the user's own pySigma cache is left alone.
func runSigmaAnalyze(t *testing.T, dir string, active map[string]bool, extra ...string) map[string]int {
	t.Helper()
	home := t.TempDir()
	bundle := filepath.Join(home, "enterprise-attack.json")
	objs := []map[string]any{{"type": "x-mitre-collection", "x_mitre_version": "16.1"}}
	ids := make([]string, 0, len(active))
	for id := range active {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		objs = append(objs, map[string]any{
			"type": "attack-pattern", "name": id,
			"external_references": []map[string]string{{"source_name": "mitre-attack", "external_id": id}},
			"kill_chain_phases":   []map[string]string{{"kill_chain_name": "mitre-attack", "phase_name": "any"}},
		})
	}
	b, err := json.Marshal(map[string]any{"type": "bundle", "objects": objs})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundle, b, 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
	cache := exec.Command("sigma", "pysigma", "update-cache", "--yes", "--url", "mitre_attack:"+bundle)
	cache.Env = env
	if out, err := cache.CombinedOutput(); err != nil {
		t.Fatalf("sigma pysigma update-cache: %v\n%s", err, out)
	}
	layer := filepath.Join(home, "layer.json")
	args := append([]string{"analyze", "attack"}, extra...)
	args = append(args, "count", layer, dir)
	cmd := exec.Command("sigma", args...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sigma %v: %v\n%s", args, err, out)
	}
	data, err := os.ReadFile(layer)
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		Techniques []struct {
			TechniqueID string `json:"techniqueID"`
			Score       int    `json:"score"`
		} `json:"techniques"`
	}
	if err := json.Unmarshal(data, &l); err != nil {
		t.Fatal(err)
	}
	scores := map[string]int{}
	for _, x := range l.Techniques {
		scores[x.TechniqueID] = x.Score
	}
	return scores
}

func activeTechniques(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(needShared(t, sigmaATTACK))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Categories struct {
			Techniques []struct {
				ID string `json:"id"`
			} `json:"techniques"`
		} `json:"categories"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	active := map[string]bool{}
	for _, x := range f.Categories.Techniques {
		active[x.ID] = true
	}
	return active
}

// TestSigmaCLIAgrees compares per-technique rule counts with sigma-cli's
// `sigma analyze attack count` on the shared Sigma folder. `make test` installs sigma-cli
// (scripts/test-deps.sh); without it the test fails naming the command that installs it.
func TestSigmaCLIAgrees(t *testing.T) {
	if _, err := exec.LookPath("sigma"); err != nil {
		t.Fatal("sigma (sigma-cli) is not on PATH: run `scripts/test-deps.sh` (or `python3 -m pip install sigma-cli`)")
	}
	dir := needSharedRules(t, "sigma")
	active := activeTechniques(t)
	s := scan(t, dir)
	rep := Build(s, BuildOptions{OnlyRuleTechniques: true})

	t.Run("subtechniques", func(t *testing.T) {
		// Default mode: each rule counts once for each technique ID it is tagged with.
		theirs := runSigmaAnalyze(t, dir, active)
		ours := map[string]int{}
		for _, tt := range rep.Techniques {
			n := len(tt.DirectRules())
			if n == 0 {
				continue
			}
			if !active[tt.ID] {
				// sigma-cli drops IDs its ATT&CK data does not list (revoked, deprecated, newer).
				t.Logf("%s: %d rules here, not in ATT&CK 16.1, not in sigma-cli's layer", tt.ID, n)
				continue
			}
			ours[tt.ID] = n
		}
		if !mapsEqual(ours, theirs) {
			t.Errorf("per-technique counts differ\n ours  %v\n sigma %v", ours, theirs)
		}
		if theirs["T1021.002"] != 38 {
			t.Errorf("sigma-cli T1021.002 = %d, want 38", theirs["T1021.002"])
		}
	})

	t.Run("no-subtechniques", func(t *testing.T) {
		// With -S sigma-cli folds each tag to its parent and counts tags, not rules: a rule
		// tagged T1021.002 and T1021.003 adds 2 to T1021. enricher's parent roll-up counts
		// distinct rules. Check both: sigma equals the tag count, and say where it differs.
		theirs := runSigmaAnalyze(t, dir, active, "-S")
		tags := map[string]int{}
		distinct := map[string]map[int]bool{}
		for i, r := range s.Rules {
			for _, id := range r.Techniques {
				p := id
				if q := rules.Parent(id); q != "" {
					p = q
				}
				tags[p]++
				if distinct[p] == nil {
					distinct[p] = map[int]bool{}
				}
				distinct[p][i] = true
			}
		}
		for id := range tags {
			if !active[id] {
				delete(tags, id)
			}
		}
		if !mapsEqual(tags, theirs) {
			t.Errorf("-S counts differ from the tag count\n tags  %v\n sigma %v", tags, theirs)
		}
		for id, n := range theirs {
			if d := len(distinct[id]); d != n {
				t.Logf("%s: sigma-cli -S says %d (tags), enricher rollup_rules says %d", id, n, d)
			}
		}
		for id, d := range distinct {
			if tt := rep.Technique(id); tt == nil || tt.RollupRules != len(d) {
				t.Errorf("%s: report roll-up %v, want %d distinct rules", id, tt, len(d))
			}
		}
		if theirs["T1021"] != 41 || len(distinct["T1021"]) != 38 {
			t.Errorf("T1021 with -S: sigma %d (want 41 tags), distinct %d (want 38 rules)", theirs["T1021"], len(distinct["T1021"]))
		}
	})
}
