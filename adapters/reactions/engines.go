package reactions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
)

// engineHealth remembers which engines were last seen unavailable, so
// that an outage is logged once when it starts and once when it ends,
// not once per item. Safe for concurrent use.
type engineHealth struct {
	logger *slog.Logger
	mu     sync.Mutex
	down   map[string]bool
}

func (h *engineHealth) unavailable(engine string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.down[engine] {
		if h.down == nil {
			h.down = map[string]bool{}
		}
		h.down[engine] = true
		h.logger.Error("engine unavailable: its work waits until it is back", "engine", engine, "err", err)
	}
}

func (h *engineHealth) up(engine string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down[engine] {
		delete(h.down, engine)
		h.logger.Info("engine back", "engine", engine)
	}
}

// attempt runs an engine call for subject up to attempts times and sorts
// its outcome:
//   - success: the result, "" and nil;
//   - the engine is unavailable (media.ErrUnavailable) or ctx ended: an
//     error (of kind Unavailable), so that the commit is redelivered and
//     the work waits for the engine;
//   - the engine refuses the input (media.ErrUnusable, ErrNotFound,
//     ErrTooLarge): the
//     reason to record, at once — no retry could help;
//   - any other error: retried after 1 s, 2 s, ...; when every attempt
//     failed, the reason "<engine> failed N times: <last error>".
func attempt[T any](ctx context.Context, h *engineHealth, attempts int, engine, subject string, run func() (T, error)) (T, string, error) {
	var zero T
	var err error
	for try := 1; try <= attempts; try++ {
		var v T
		v, err = run()
		switch {
		case err == nil:
			h.up(engine)
			return v, "", nil
		case errors.Is(err, media.ErrUnavailable):
			h.unavailable(engine, err)
			return zero, "", es.Wrap(es.Unavailable, engine, err)
		case errors.Is(err, media.ErrUnusable), errors.Is(err, media.ErrNotFound), errors.Is(err, media.ErrTooLarge):
			h.up(engine)
			return zero, err.Error(), nil
		case ctx.Err() != nil:
			return zero, "", ctx.Err()
		}
		h.logger.Warn("engine failed", "engine", engine, "subject", subject, "attempt", try, "err", err)
		if try < attempts {
			t := time.NewTimer(time.Duration(try) * time.Second)
			select {
			case <-ctx.Done():
				t.Stop()
				return zero, "", ctx.Err()
			case <-t.C:
			}
		}
	}
	return zero, fmt.Sprintf("%s failed %d times: %v", engine, attempts, err), nil
}

// readBlob reads a blob whole, refusing one over limit bytes with
// media.ErrTooLarge.
func readBlob(ctx context.Context, blobs media.Blobs, ref media.BlobRef, limit int64) ([]byte, error) {
	r, _, err := blobs.Open(ctx, ref.Bucket, ref.Name)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", ref.Name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", ref.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: blob %s is over %d bytes", media.ErrTooLarge, ref.Name, limit)
	}
	return b, nil
}
