package jetstream

import (
	"context"
	"testing"
	"time"
)

// TestUploadsAreCutOnlyWhenIdle checks the bound on a stopping Run's
// snapshot uploads: not cut while they progress, cut once idle for the
// idle bound or after the overall one, and left alone once they end.
func TestUploadsAreCutOnlyWhenIdle(t *testing.T) {
	const idle, most = 200 * time.Millisecond, time.Second
	watch := func(w *uploadWatch) (context.Context, context.CancelFunc, chan struct{}) {
		uploads, cut := context.WithCancel(context.Background())
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			w.cutWhenIdle(uploads, cut, idle, most)
		}()
		return uploads, cut, returned
	}
	t.Run("progressing", func(t *testing.T) {
		var w uploadWatch
		uploads, cut, returned := watch(&w)
		defer cut()
		var stopped time.Time // the last progress
		for end := time.Now().Add(4 * idle); time.Now().Before(end); time.Sleep(idle / 10) {
			w.mark()
			stopped = time.Now()
			if uploads.Err() != nil {
				t.Fatal("uploads making progress were cut")
			}
		}
		select {
		case <-returned:
		case <-time.After(10 * idle):
			t.Fatal("idle uploads were not cut")
		}
		if uploads.Err() == nil {
			t.Fatal("returned without cutting idle uploads")
		}
		if took := time.Since(stopped); took < idle {
			t.Fatalf("cut %v after the last progress, under the %v bound", took, idle)
		}
	})
	t.Run("most", func(t *testing.T) {
		var w uploadWatch
		uploads, cut, returned := watch(&w)
		defer cut()
		began := time.Now()
		for uploads.Err() == nil && time.Since(began) < 2*most {
			w.mark()
			time.Sleep(idle / 10)
		}
		<-returned
		if took := time.Since(began); uploads.Err() == nil || took < most || took > most+idle {
			t.Fatalf("uploads always progressing: cut %v after %v, want cut after %v", uploads.Err(), took, most)
		}
	})
	t.Run("ended", func(t *testing.T) {
		var w uploadWatch
		uploads, cut, returned := watch(&w)
		cut() // Run returned: its uploads ended
		select {
		case <-returned:
		case <-time.After(idle):
			t.Fatal("the watch outlived the uploads")
		}
		_ = uploads
	})
}
