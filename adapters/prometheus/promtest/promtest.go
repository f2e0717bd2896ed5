// Package promtest scrapes a /metrics endpoint in tests and reads values
// out of the scrape. Tests only.
package promtest

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape is one scrape's metric families, by name.
type Scrape map[string]*dto.MetricFamily

// Get fetches url (with the bearer token, if any) and returns the HTTP
// status and, on 200, the parsed scrape.
func Get(tb testing.TB, url, token string) (int, Scrape) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("scrape %s: %v", url, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		return res.StatusCode, nil
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(res.Body)
	if err != nil {
		tb.Fatalf("scrape %s: parse: %v", url, err)
	}
	return res.StatusCode, fams
}

// MustGet is Get, failing the test unless the status is 200.
func MustGet(tb testing.TB, url, token string) Scrape {
	tb.Helper()
	code, s := Get(tb, url, token)
	if code != http.StatusOK {
		tb.Fatalf("scrape %s: status %d", url, code)
	}
	return s
}

// Value returns the sum of name's series whose labels include labels
// (name_count and name_sum read a histogram's count and sum), and
// whether any series matched.
func (s Scrape) Value(name string, labels map[string]string) (float64, bool) {
	fam, field := s[name], ""
	if fam == nil {
		for _, suffix := range []string{"_count", "_sum"} {
			if n := len(name) - len(suffix); n > 0 && name[n:] == suffix && s[name[:n]] != nil {
				fam, field = s[name[:n]], suffix
			}
		}
	}
	if fam == nil {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		case m.Histogram != nil && field == "_sum":
			sum += m.Histogram.GetSampleSum()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

// Labels returns a description of name's series, for failure messages.
func (s Scrape) Labels(name string) string {
	fam := s[name]
	if fam == nil {
		return name + ": no series"
	}
	out := name + ":"
	for _, m := range fam.Metric {
		out += " {"
		for _, l := range m.Label {
			out += fmt.Sprintf("%s=%q,", l.GetName(), l.GetValue())
		}
		out += "}"
	}
	return out
}
