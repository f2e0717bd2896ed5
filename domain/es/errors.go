package es

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error for clients; api/ maps each kind to one
// Connect code.
type Kind int

const (
	Internal           Kind = iota // a bug or an outage; details stay server-side
	Invalid                        // bad input: Connect InvalidArgument
	NotFound                       // Connect NotFound
	Conflict                       // version conflict that retries did not resolve: Connect Aborted
	FailedPrecondition             // the state forbids the command: Connect FailedPrecondition
	Forbidden                      // the caller may not do this: Connect PermissionDenied
	Unauthenticated                // no or bad credentials: Connect Unauthenticated
	Unavailable                    // try again later: Connect Unavailable
	ResourceExhausted              // out of room (the store's disk is full); retry once freed: Connect ResourceExhausted
	OutOfRange                     // a position past anything written: Connect OutOfRange
)

func (k Kind) String() string {
	switch k {
	case Invalid:
		return "invalid"
	case NotFound:
		return "not found"
	case Conflict:
		return "conflict"
	case FailedPrecondition:
		return "failed precondition"
	case Forbidden:
		return "forbidden"
	case Unauthenticated:
		return "unauthenticated"
	case Unavailable:
		return "unavailable"
	case ResourceExhausted:
		return "resource exhausted"
	case OutOfRange:
		return "out of range"
	}
	return "internal"
}

// Error is a coded domain error. Field names the offending input for
// Invalid errors. Message is safe to show to clients. RetryAfter, when
// set, is how long a client should wait before trying again (a rate
// limit's ResourceExhausted); api/ also answers it as a detail.
type Error struct {
	Kind       Kind
	Field      string
	Message    string
	Err        error // optional cause, never shown to clients
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is match sentinel *Error values by kind and message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Message == e.Message && t.Field == e.Field
}

// Invalidf returns an Invalid error naming field.
func Invalidf(field, format string, args ...any) error {
	return &Error{Kind: Invalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Errorf returns an error of kind k.
func Errorf(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of the first *Error in err's chain, or Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}

// ErrConflict is returned by Store.Append when the expected version is stale.
var ErrConflict = &Error{Kind: Conflict, Message: "stream version changed concurrently"}

// ErrStoreFull is returned by Store.Append when the store has no room for
// more events (its disk is full). Nothing is stored; appends succeed again
// once room is made, without a restart.
var ErrStoreFull = &Error{Kind: ResourceExhausted, Message: "event store is out of disk space"}

// Wrap returns an error of kind k with a short context message and cause.
func Wrap(k Kind, msg string, err error) error {
	return &Error{Kind: k, Message: msg, Err: err}
}
