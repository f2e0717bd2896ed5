package edge_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// crashTrace writes a 100 Hz trace of riding with `crashes` crashes (a
// tumble, an impact, then stillness), 40 s apart, as CSV or JSON Lines,
// and returns its path and sample count.
func crashTrace(tb testing.TB, format string, crashes int) (string, int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(7, 9))
	var b strings.Builder
	if format == "csv" {
		b.WriteString("# a test trace\nt,ax,ay,az,gx,gy,gz\n")
	}
	n := 0
	emit := func(a, g [3]float64) {
		t := float64(n) / 100
		if format == "csv" {
			fmt.Fprintf(&b, "%.2f,%.4f,%.4f,%.4f,%.2f,%.2f,%.2f\n", t, a[0], a[1], a[2], g[0], g[1], g[2])
		} else {
			m := map[string]any{"t": t, "ax": a[0], "ay": a[1], "az": a[2], "gx": g[0], "gy": g[1], "gz": g[2]}
			if n%100 == 0 {
				m["lat"], m["lng"] = 48.85, 2.35
			}
			j, _ := json.Marshal(m)
			b.Write(append(j, '\n'))
		}
		n++
	}
	ride := func(samples int) {
		for i := 0; i < samples; i++ {
			v := func() float64 { return (rng.Float64() - 0.5) * 0.1 }
			emit([3]float64{v(), v(), 1 + v()}, [3]float64{v() * 10, v() * 10, v() * 10})
		}
	}
	for c := 0; c < crashes; c++ {
		ride(3500)
		for i := 0; i < 30; i++ { // tumbling
			emit([3]float64{0.5, 0.5, 0.8}, [3]float64{300, 100, 50})
		}
		for i := 0; i < 6; i++ { // impact
			emit([3]float64{4, 3, 2}, [3]float64{250, 50, 50})
		}
		for i := 0; i < 900; i++ { // lying still
			emit([3]float64{0, 1, 0}, [3]float64{0, 0, 0})
		}
	}
	ride(100)
	path := filepath.Join(tb.TempDir(), "trace."+format)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path, n
}
