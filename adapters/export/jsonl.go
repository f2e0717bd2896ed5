package export

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/tideline/tideline/schemas/gen/tideline/analytics/v1"
)

// JSONL writes JSON Lines: one object a line per event, with the envelope
// (seq and index, its position; commit_id, event_id, stream, type,
// occurred_at and recorded_at in RFC 3339, actor, source, correlation_id,
// causation_id) and data, the payload as protojson with the proto field
// names (null for a type this binary does not know).
type JSONL struct {
	w    io.Writer
	file *atomicFile // nil when writing to a caller's writer
	line []byte
}

var _ Writer = (*JSONL)(nil)

// NewJSONL returns a JSONL writer to the file at path.
func NewJSONL(path string) (*JSONL, error) {
	f, err := createFile(path)
	if err != nil {
		return nil, err
	}
	return &JSONL{w: f, file: f}, nil
}

// NewJSONLTo returns a JSONL writer to w (standard output, say); Close
// does not close w.
func NewJSONLTo(w io.Writer) *JSONL { return &JSONL{w: w} }

// jsonlEnvelope is a line's envelope, in column order.
type jsonlEnvelope struct {
	Seq           uint64          `json:"seq"`
	Index         uint32          `json:"index"`
	CommitID      string          `json:"commit_id"`
	EventID       string          `json:"event_id"`
	Stream        string          `json:"stream"`
	Type          string          `json:"type"`
	OccurredAt    string          `json:"occurred_at"`
	RecordedAt    string          `json:"recorded_at"`
	Actor         string          `json:"actor"`
	Source        string          `json:"source"`
	CorrelationID string          `json:"correlation_id"`
	CausationID   string          `json:"causation_id"`
	Data          json.RawMessage `json:"data"`
}

var payloadJSON = protojson.MarshalOptions{UseProtoNames: true}

func rfc3339(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().Format(time.RFC3339Nano)
}

// Write implements Writer.
func (j *JSONL) Write(e *analyticsv1.RecordedEvent) error {
	env := jsonlEnvelope{
		Seq: e.GetPosition().GetSeq(), Index: e.GetPosition().GetIndex(), CommitID: e.CommitId, EventID: e.EventId,
		Stream: e.Stream, Type: e.Type, OccurredAt: rfc3339(e.OccurredAt), RecordedAt: rfc3339(e.RecordedAt),
		Actor: e.Actor, Source: e.Source, CorrelationID: e.CorrelationId, CausationID: e.CausationId, Data: json.RawMessage("null"),
	}
	if m, ok := payload(e); ok {
		data, err := payloadJSON.Marshal(m)
		if err != nil {
			return fmt.Errorf("event %s: %w", e.EventId, err)
		}
		env.Data = data
	}
	line, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("event %s: %w", e.EventId, err)
	}
	j.line = append(append(j.line[:0], line...), '\n')
	_, err = j.w.Write(j.line)
	return err
}

// Close implements Writer.
func (j *JSONL) Close() ([]string, error) {
	if j.file == nil {
		return nil, nil
	}
	if err := j.file.commit(); err != nil {
		return nil, err
	}
	return []string{j.file.path}, nil
}

// Abort implements Writer.
func (j *JSONL) Abort() {
	if j.file != nil {
		j.file.abort()
	}
}
