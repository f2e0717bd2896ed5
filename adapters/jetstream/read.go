package jetstream

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/wire"
)

// readBatch bounds how many commits Read hands over at once; it hands
// over sooner when the log has nothing more pending, and after 16 times
// as many messages passed over (progress of a narrow read).
const readBatch = 256

// Read reads the commits sel selects, in order, with an ordered consumer
// from sel.From, and hands them to fn in batches (each handed-over slice
// is fn's to keep). With sel.To set it returns nil once it has read every
// selected commit up to To; with To 0 it follows the log until ctx ends,
// and hands over a batch, CaughtUp, whenever it has read all there is
// (possibly with no commits). Memory stays bounded whatever the range: at
// most one batch and the consumer's prefetch.
//
// It returns fn's error, ctx's error, an es.Unavailable error when the
// stream cannot be read, and an es.Internal error for a commit that does
// not decode. Messages on subjects that are no stream are passed over.
func (s *Store) Read(ctx context.Context, sel es.Selection, fn func(es.LogBatch) error) error {
	subjects, none := selectionSubjects(sel)
	if none || (sel.To > 0 && sel.To < sel.From) {
		return nil
	}
	cons, err := s.js.OrderedConsumer(ctx, s.cfg.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(sel.From, 1),
	})
	if err != nil {
		return es.Wrap(es.Unavailable, "read events: ordered consumer", err)
	}
	var types map[string]struct{}
	if len(sel.Types) > 0 {
		types = make(map[string]struct{}, len(sel.Types))
		for _, t := range sel.Types {
			types[t] = struct{}{}
		}
	}
	b := es.LogBatch{Commits: make([]es.Commit, 0, readBatch)}
	read := 0 // messages read since the last handover
	hand := func() error {
		// The next batch is made as large as this one: following the log
		// live, a commit handed over alone costs one, not readBatch.
		size := max(len(b.Commits), 1)
		err := fn(b)
		b.Commits, read = make([]es.Commit, 0, size), 0
		return err
	}
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		if sel.To > 0 {
			return nil
		}
		b.CaughtUp = true
		if err := hand(); err != nil {
			return err
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(pullMaxMessages), jetstream.PullHeartbeat(feedHeartbeat))
	if err != nil {
		return es.Wrap(es.Unavailable, "read events: consume", err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return es.Wrap(es.Unavailable, "read events", err)
		}
		seq, pending, recorded, ok := ackSequences(m.Reply())
		if !ok {
			md, err := m.Metadata()
			if err != nil {
				return es.Wrap(es.Internal, "read events: message metadata", err)
			}
			seq, pending, recorded = md.Sequence.Stream, md.NumPending, md.Timestamp
		}
		if sel.To > 0 && seq > sel.To {
			if len(b.Commits) > 0 {
				return hand()
			}
			return nil
		}
		b.Position, b.CaughtUp = seq, pending == 0
		read++
		if stream, err := es.ParseStreamID(m.Subject()); err == nil && stream.Validate() == nil && wantTypes(types, m.Headers().Get(wire.HeaderEventTypes)) {
			c, err := wire.DecodeCommit(stream, seq, m.Headers(), m.Data())
			if err != nil {
				return err
			}
			for i := range c.Events {
				c.Events[i].RecordedAt = recorded
			}
			b.Commits = append(b.Commits, c)
		}
		end := sel.To > 0 && (seq == sel.To || pending == 0)
		if end || pending == 0 || len(b.Commits) == readBatch || read == 16*readBatch {
			if err := hand(); err != nil || end {
				return err
			}
		}
	}
}

// wantTypes reports whether a commit's event-types header names one of
// types (nil: any). A commit without the header is read to be safe.
func wantTypes(types map[string]struct{}, header string) bool {
	if types == nil || header == "" {
		return true
	}
	for t := range strings.SplitSeq(header, ",") {
		if _, ok := types[t]; ok {
			return true
		}
	}
	return false
}

// selectionSubjects returns the subject filter of sel (nil: every
// subject), and none when sel's contexts and streams have nothing in
// common.
func selectionSubjects(sel es.Selection) (subjects []string, none bool) {
	for _, st := range sel.Streams {
		if len(sel.Contexts) == 0 || slices.Contains(sel.Contexts, st.Context) {
			subjects = append(subjects, st.String())
		}
	}
	if len(sel.Streams) > 0 {
		return subjects, len(subjects) == 0
	}
	for _, c := range sel.Contexts {
		subjects = append(subjects, "ev."+c+".>")
	}
	return subjects, false
}

// FirstPositionAt returns the position of the first commit the store
// recorded at or after t, from the stream's time index with one Direct
// Get (no scan), or the stream's last position + 1 when there is none.
// PositionAt is its mirror: the last commit at or before a time.
func (s *Store) FirstPositionAt(ctx context.Context, t time.Time) (uint64, error) {
	req, _ := json.Marshal(wire.DirectGetRequest{StartTime: &t})
	m, err := s.nc.RequestWithContext(ctx, s.directGet, req)
	if err != nil {
		return 0, es.Wrap(es.Unavailable, "position at time", err)
	}
	r, err := wire.ReadDirectGet(m)
	if err != nil {
		return 0, directGetError("position at time", err)
	}
	if r.Found {
		return r.Seq, nil
	}
	last, err := s.LastPosition(ctx)
	if err != nil {
		return 0, es.Wrap(es.Unavailable, "position at time", err)
	}
	return last + 1, nil
}
