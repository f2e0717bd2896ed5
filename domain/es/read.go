package es

// Selection picks commits out of the whole event log, for reads that are
// not an aggregate's (analytics exports, subscriptions).
type Selection struct {
	// From is the first commit position read (at least 1); To the last,
	// or 0 to read on as commits are appended, until the reader stops.
	From, To uint64
	// Contexts and Streams narrow the read to those streams' commits; an
	// empty list does not narrow. With both, a stream must also be in one
	// of the contexts.
	Contexts []string
	Streams  []StreamID
	// Types, when not empty, skips commits with none of these event types
	// (fully qualified names). A commit that has one is read whole: the
	// reader filters its events.
	Types []string
}

// LogBatch is what a read of the log hands over at a time: whole commits
// in order, the position of the last commit read (selected or not), and
// whether the log held nothing more when it was read (CaughtUp).
type LogBatch struct {
	Commits  []Commit
	Position uint64
	CaughtUp bool
}
