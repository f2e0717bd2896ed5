// Package jstest helps tests of what stores events in the JetStream event
// store.
package jstest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tideline/tideline/adapters/jetstream"
)

// RawStream returns every message of s's events stream as stored:
// subject, headers and data, for tests that scan it for what must not be
// there (personal data in plain). An empty stream fails the test.
func RawStream(tb testing.TB, s *jetstream.Store) []byte {
	tb.Helper()
	ctx := context.Background()
	st, err := s.JetStream().Stream(ctx, s.StreamName())
	if err != nil {
		tb.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			tb.Fatal(err)
		}
		out.WriteString(m.Subject)
		for k, vs := range m.Header {
			out.WriteString(k + strings.Join(vs, ""))
		}
		out.Write(m.Data)
	}
	if out.Len() == 0 {
		tb.Fatal("empty events stream")
	}
	return out.Bytes()
}
