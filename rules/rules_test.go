package rules

import "testing"

func TestBuiltin(t *testing.T) {
	rs, err := LoadBuiltin(Options{})
	if err != nil {
		t.Fatal(err)
	}
	ms := rs.Mappings("T1021.002")
	var controls, detections int
	for _, m := range ms {
		switch m.Kind {
		case KindControl:
			controls++
		case KindDetection:
			detections++
			t.Logf("%s %s %s/%s alerts=%v q=%v ev=%v", m.CapabilityID, m.Capability, m.ScoreCategory, m.ScoreValue, m.Alerts, m.Queries, m.Events)
		}
	}
	if controls != 16 || detections != 4 {
		t.Fatalf("controls=%d detections=%d", controls, detections)
	}
	t.Log(rs.Hash(), rs.Version())
}
