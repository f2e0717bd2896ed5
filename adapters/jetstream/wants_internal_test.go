package jetstream

import "testing"

func TestWantsReadsEveryTypeOfTheHeader(t *testing.T) {
	r := &Runner{types: map[string]struct{}{"a.A": {}, "b.B": {}}}
	for types, want := range map[string]bool{
		"":            true, // no header: decoded to be safe
		"a.A":         true,
		"c.C":         false,
		"c.C,b.B":     true,
		"b.B,c.C":     true,
		"c.C,d.D,a.A": true,
		"c.C,d.D":     false,
		"a.A.x":       false,
		"c.C,":        false,
		",c.C":        false,
	} {
		if got := r.wants(types); got != want {
			t.Errorf("wants(%q) = %v, want %v", types, got, want)
		}
	}
}
