// Package export writes events as files for analysis: JSON Lines (one
// event a line, payload as protojson) and Parquet (one file per event
// type, the payload's fields as typed columns derived from its proto
// descriptor). It writes what tideline.analytics.v1.AnalyticsService's
// ExportEvents streams, one event at a time, in bounded memory.
//
// A file is written under a temporary name (its name + ".partial") and
// renamed into place only by a successful Close: an export that fails or
// is interrupted never leaves a file that looks complete.
package export

import (
	"bufio"
	"fmt"
	"os"

	analyticsv1 "github.com/tideline/tideline/schemas/gen/tideline/analytics/v1"
)

// Writer writes events to files. Write and Close are not safe for
// concurrent use.
type Writer interface {
	// Write adds one event.
	Write(e *analyticsv1.RecordedEvent) error
	// Close completes the files and renames them into place, and returns
	// their paths.
	Close() ([]string, error)
	// Abort removes the partial files; safe after Close.
	Abort()
}

// PartialSuffix ends the name of a file being written.
const PartialSuffix = ".partial"

// atomicFile is a file written as path + PartialSuffix and renamed to
// path by commit.
type atomicFile struct {
	path string
	f    *os.File
	w    *bufio.Writer
	done bool
}

func createFile(path string) (*atomicFile, error) {
	f, err := os.Create(path + PartialSuffix)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &atomicFile{path: path, f: f, w: bufio.NewWriterSize(f, 1<<20)}, nil
}

func (a *atomicFile) Write(p []byte) (int, error) { return a.w.Write(p) }

// commit flushes, syncs and closes the file, then renames it into place.
func (a *atomicFile) commit() error {
	if a.done {
		return nil
	}
	a.done = true
	err := a.w.Flush()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(a.f.Name(), a.path)
	}
	if err != nil {
		os.Remove(a.f.Name())
		return fmt.Errorf("write %s: %w", a.path, err)
	}
	return nil
}

// abort closes and removes the partial file, unless committed.
func (a *atomicFile) abort() {
	if a.done {
		return
	}
	a.done = true
	a.f.Close()
	os.Remove(a.f.Name())
}
