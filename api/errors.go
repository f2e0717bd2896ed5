package api

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tideline/tideline/domain/es"
)

var kindCodes = map[es.Kind]connect.Code{
	es.Invalid:            connect.CodeInvalidArgument,
	es.NotFound:           connect.CodeNotFound,
	es.Conflict:           connect.CodeAborted,
	es.FailedPrecondition: connect.CodeFailedPrecondition,
	es.Forbidden:          connect.CodePermissionDenied,
	es.Unauthenticated:    connect.CodeUnauthenticated,
	es.Unavailable:        connect.CodeUnavailable,
	es.ResourceExhausted:  connect.CodeResourceExhausted,
	es.OutOfRange:         connect.CodeOutOfRange,
}

// toConnect is the one mapping from domain errors to Connect errors.
// Coded errors keep their client-safe message (with the field for
// invalid input) and their RetryAfter as a google.rpc.RetryInfo detail;
// anything else is logged and reported as Internal without details.
func toConnect(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("request canceled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("deadline exceeded"))
	}
	var e *es.Error
	if errors.As(err, &e) {
		if code, ok := kindCodes[e.Kind]; ok {
			msg := e.Message
			if e.Field != "" {
				msg = e.Field + ": " + msg
			}
			if e.Kind == es.Unavailable && e.Err != nil {
				slog.WarnContext(ctx, "unavailable", "err", err)
			}
			ce := connect.NewError(code, errors.New(msg))
			if e.RetryAfter > 0 {
				if d, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryAfter)}); err == nil {
					ce.AddDetail(d)
				}
			}
			return ce
		}
	}
	slog.ErrorContext(ctx, "internal error", "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

// subfield names an Invalid error's field as part of the request field
// parent, so the message names its path in the request ("event_id" in
// the event becomes "event.event_id").
func subfield(parent string, err error) error {
	var e *es.Error
	if errors.As(err, &e) && e.Kind == es.Invalid && e.Field != "" && e.Field != parent {
		c := *e
		c.Field = parent + "." + e.Field
		return &c
	}
	return err
}

// errorInterceptor applies toConnect to every handler error.
type errorInterceptor struct{}

func (errorInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		res, err := next(ctx, req)
		return res, toConnect(ctx, err)
	}
}

func (errorInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (errorInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return toConnect(ctx, next(ctx, conn))
	}
}
