package enrich

import (
	"sort"
	"strings"
)

// ComplianceFields are where Wazuh keeps the NIST SP 800-53 controls its rule authors
// tagged the rule with: rule.nist_800_53 on Wazuh 4.x alerts ("AC.7", "AU.14"),
// wazuh.rule.compliance.nist_800_53 on Wazuh 5 findings. On an alert that carries one, the
// ATT&CK stage compares its controls with the NIST controls CTID maps to the alert's
// techniques (<root>.compliance_check); the first field that holds a control is the one
// compared, and the check names it.
var ComplianceFields = []string{"rule.nist_800_53", "wazuh.rule.compliance.nist_800_53"}

// maxComplianceValues bounds the values read from a compliance field on one alert.
const maxComplianceValues = 64

// ComplianceCheck compares an alert's own NIST tags with CTID's NIST mappings.
type ComplianceCheck struct {
	Field     string   // the alert's field the tags were read from (one of ComplianceFields)
	Both      []string // tagged by the alert's rule and mapped by CTID
	OnlyAlert []string // tagged by the rule, not mapped by CTID
	OnlyCTID  []string // mapped by CTID, not tagged by the rule
}

// Differs is true when the two sets are not the same: a field an analyst filters on.
func (c *ComplianceCheck) Differs() bool { return len(c.OnlyAlert)+len(c.OnlyCTID) > 0 }

// NormalizeNISTControl turns a control as Wazuh writes it ("AC.7", "ac-02", "AC.2(1)")
// into CTID's canonical form ("AC-7", "AC-2", "AC-2(1)"); "" when it is not one.
func NormalizeNISTControl(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) < 4 || len(s) > 16 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' || (s[2] != '.' && s[2] != '-') {
		return ""
	}
	num, enh, _ := strings.Cut(s[3:], "(")
	num = strings.TrimLeft(num, "0")
	if num == "" || strings.Trim(num, "0123456789") != "" {
		return ""
	}
	out := s[:2] + "-" + num
	if enh != "" {
		enh = strings.TrimSuffix(enh, ")")
		enh = strings.TrimLeft(enh, "0")
		if enh == "" || strings.Trim(enh, "0123456789") != "" {
			return ""
		}
		out += "(" + enh + ")"
	}
	return out
}

// complianceCheck compares the NIST tags on src with ctid (sorted, canonical); nil when
// src carries none.
func complianceCheck(src map[string]any, ctid []string) *ComplianceCheck {
	tagged := map[string]bool{}
	field := ""
	for _, f := range ComplianceFields {
		n := 0
		for _, v := range Values(src, f) {
			s, ok := v.(string)
			if !ok {
				continue
			}
			if n++; n > maxComplianceValues {
				break
			}
			if id := NormalizeNISTControl(s); id != "" {
				tagged[id] = true
			}
		}
		if len(tagged) > 0 {
			field = f
			break
		}
	}
	if len(tagged) == 0 {
		return nil
	}
	c := &ComplianceCheck{Field: field, Both: []string{}, OnlyAlert: []string{}, OnlyCTID: []string{}}
	for _, id := range ctid {
		if tagged[id] {
			c.Both = append(c.Both, id)
		} else {
			c.OnlyCTID = append(c.OnlyCTID, id)
		}
	}
	for id := range tagged {
		if !contains(ctid, id) {
			c.OnlyAlert = append(c.OnlyAlert, id)
		}
	}
	sort.Strings(c.OnlyAlert)
	return c
}

// appendJSON appends the check as the value of <root>.compliance_check.
func (c *ComplianceCheck) appendJSON(dst []byte) []byte {
	list := func(dst []byte, key string, xs []string) []byte {
		dst = append(dst, `"`+key+`":[`...)
		for i, x := range xs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, x)
		}
		return append(dst, ']')
	}
	dst = append(dst, `{"field":`...)
	dst = appendJSONString(dst, c.Field)
	dst = append(dst, `,"framework":"nist_800_53",`...)
	dst = list(dst, "both", c.Both)
	dst = append(dst, ',')
	dst = list(dst, "only_alert", c.OnlyAlert)
	dst = append(dst, ',')
	dst = list(dst, "only_ctid", c.OnlyCTID)
	if c.Differs() {
		return append(dst, `,"differs":true}`...)
	}
	return append(dst, `,"differs":false}`...)
}
