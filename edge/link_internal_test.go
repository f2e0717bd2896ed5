package edge

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/internal/logtest"
)

func testLinkLog(t *testing.T, httpPort bool) (*linkLog, *logtest.Buffer, *time.Time) {
	buf := &logtest.Buffer{}
	l := newLinkLog(context.Background(), slog.New(slog.NewTextHandler(buf, nil)), "hub.example:7422")
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	l.probe = func(context.Context, string) bool { return httpPort }
	t.Cleanup(l.probes.Wait)
	return l, buf, &now
}

// The server's own words for each failure (nats-server v2.15) become one
// line saying what is wrong and what to check.
func TestLinkLogExplains(t *testing.T) {
	tests := []struct {
		name   string
		errorf string // logged with Errorf
		want   []string
	}{
		{"revoked_or_unknown", `127.0.0.1:7422 - lid:6 - Leafnode Error 'Authorization Violation'`,
			[]string{"the hub refuses this device (nats: authorization violation)", "revoked", "tideline device add"}},
		{"nothing_listens", `Error trying to connect as leafnode to remote server "hub.example:7422" (attempt 3): dial tcp 10.0.0.1:7422: connect: connection refused`,
			[]string{"connection refused by hub.example:7422", "--leaf-listen"}},
		{"unknown_host", `Error trying to connect as leafnode to remote server "hub.example:7422" (attempt 1): lookup for host "hub.example": lookup hub.example on 10.255.255.53:53: no such host`,
			[]string{"unknown host in --hub hub.example:7422"}},
		{"timeout", `Error trying to connect as leafnode to remote server "hub.example:7422" (attempt 1): dial tcp 10.0.0.1:7422: i/o timeout`,
			[]string{"no answer from hub.example:7422 (timeout)", "firewall"}},
		{"client_port", `127.0.0.1:4222 - lid:5 - attempted to connect to wrong port`,
			[]string{"hub.example:7422 is a NATS client port, not the hub's leaf port", "nats-leaf://HOST:7422"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, buf, _ := testLinkLog(t, false)
			l.Errorf("%s", tc.errorf)
			line := buf.Lines()[0]
			if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "no link to the hub") {
				t.Fatalf("logged %q, want a warning that there is no link to the hub", line)
			}
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("logged %q, want it to mention %q", line, w)
				}
			}
		})
	}
}

// A connection closed before any NATS greeting, with no error to explain
// it, is a port that does not speak NATS; the probe says if it is HTTP.
func TestLinkLogNotNATS(t *testing.T) {
	for _, httpPort := range []bool{true, false} {
		l, buf, _ := testLinkLog(t, httpPort)
		l.Noticef("%s", `127.0.0.1:8080 - lid:5 - Leafnode connection created for account: $G `)
		l.Noticef("%s", `127.0.0.1:8080 - lid:5 - Leafnode connection closed: Read Error`)
		l.probes.Wait()
		lines := buf.Lines()
		want := "is not a NATS leaf port"
		if httpPort {
			want = "speaks HTTP: it is a web port"
		}
		if len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Fatalf("http %v: logged %q, want one line saying %q", httpPort, lines, want)
		}
	}

	// Closing notices of a link that was up, or whose failure an error
	// explained, add nothing.
	l, buf, _ := testLinkLog(t, false)
	l.Noticef("%s", `127.0.0.1:7422 - lid:7 - Leafnode connection closed: Client Closed - Remote: hub`)
	l.Errorf("%s", `127.0.0.1:4222 - lid:8 - attempted to connect to wrong port`)
	l.Noticef("%s", `127.0.0.1:4222 - lid:8 - Leafnode connection closed: Incorrect Port`)
	l.probes.Wait()
	if lines := buf.Lines(); len(lines) != 1 || !strings.Contains(lines[0], "client port") {
		t.Fatalf("logged %q, want only the wrong port", lines)
	}
}

// One line per problem, then one every linkLogEvery with the count of
// attempts; a new problem or the link coming up is logged at once.
func TestLinkLogRateLimits(t *testing.T) {
	l, buf, now := testLinkLog(t, false)
	auth := `127.0.0.1:7422 - lid:%d - Leafnode Error 'Authorization Violation'`
	for i := range 50 { // a second apart: 50 attempts in 49 s
		l.Errorf(auth, i)
		*now = now.Add(time.Second)
	}
	lines := buf.Lines()
	if len(lines) != 2 || !strings.Contains(lines[0], "no link to the hub") ||
		!strings.Contains(lines[1], "still no link to the hub") || !strings.Contains(lines[1], "attempts=30") {
		t.Fatalf("50 refusals in 49 s logged:\n%s\nwant the first, then one after 30 s counting 30 more attempts", strings.Join(lines, "\n"))
	}

	l.Errorf("%s", `Error trying to connect as leafnode to remote server "hub.example:7422" (attempt 1): dial tcp: connect: connection refused`)
	l.linkChanged(true)
	l.Errorf(auth, 99)
	lines = buf.Lines()[2:]
	if len(lines) != 3 || !strings.Contains(lines[0], "connection refused") || !strings.Contains(lines[1], "hub link up") ||
		!strings.Contains(lines[2], "refuses this device") {
		t.Fatalf("a new problem, the link up, then the old problem again logged:\n%s", strings.Join(lines, "\n"))
	}

	l.Errorf("%s", "JetStream: something unrelated went wrong")
	if last := buf.Lines()[len(buf.Lines())-1]; !strings.Contains(last, "level=ERROR") || !strings.Contains(last, "something unrelated") {
		t.Fatalf("an unrelated server error logged as %q", last)
	}
}
