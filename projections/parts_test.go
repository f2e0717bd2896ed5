package projections_test

import (
	"hash/fnv"
	"testing"

	"github.com/tideline/tideline/projections"
)

// PartOf is FNV-1a modulo PartCount, so that segments stored by one
// version name the same partitions in the next.
func TestPartOf(t *testing.T) {
	for _, key := range []string{"", "r00001", "rider-0042", "01JD0000000000000000000001", "한글"} {
		h := fnv.New32a()
		h.Write([]byte(key))
		if got, want := projections.PartOf(key), int(h.Sum32()%projections.PartCount); got != want {
			t.Errorf("PartOf(%q) = %d, want %d", key, got, want)
		}
	}
}

func BenchmarkPartOf(b *testing.B) {
	for b.Loop() {
		projections.PartOf("01JD0000000000000000000001")
	}
}
