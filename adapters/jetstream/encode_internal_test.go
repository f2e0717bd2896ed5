package jetstream

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// BenchmarkEncodeCommit is the client's share of an append with OCC, the
// message built before it is sent: `go test ./adapters/jetstream -run '^$'
// -bench EncodeCommit -benchmem`.
func BenchmarkEncodeCommit(b *testing.B) {
	stream := es.StreamID{Context: "steps", Type: "user", ID: "w17-a3"}
	events := []proto.Message{&stepsv1.StepsRecorded{UserId: string(make([]byte, 200)), Date: "2026-12-02", Steps: 9000}}
	opts := es.AppendOptions{ExpectedVersion: 1234567, Meta: es.Metadata{Actor: "walker:alice"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeCommit(stream, events, opts, false); err != nil {
			b.Fatal(err)
		}
	}
}
