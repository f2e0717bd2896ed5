package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
)

const projectionsUsage = `usage:
  tideline projections list [--server URL] [--data DIR]
  tideline projections rebuild NAME [--server URL] [--data DIR]
  tideline projections resume NAME [--server URL] [--data DIR]
  tideline projections skip NAME --position N --reason TEXT [--server URL] [--data DIR]
  tideline projections at NAME --position N|--time T [--server URL] [--data DIR]

A projection that meets a commit it cannot decode or apply stops there
(state stopped, with the position and the reason). Fix the code and resume
it (a restart resumes too), or skip that one commit: the decision is
recorded as an event and every later replay and rebuild honours it.

'at' prints a projection's summary (JSON) as of a past position, or as of
the last commit stored at or before a time (RFC 3339), rebuilt into a
fresh instance from the nearest kept snapshot.`

func projectionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("projections", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, projectionsUsage)
		fs.PrintDefaults()
	}
	server := fs.String("server", "http://127.0.0.1:8080", "URL of the running server")
	data := fs.String("data", "./data", "the server's data directory (its key signs an admin token)")
	position := fs.Uint64("position", 0, "skip: the position the projection is stopped at; at: the position to answer as of")
	at := fs.String("time", "", "at: answer as of the last commit stored at or before this RFC 3339 time")
	reason := fs.String("reason", "", "skip: why skipping the commit is right (recorded with the decision)")
	if len(args) == 0 {
		fs.Usage()
		return fmt.Errorf("projections: want list, rebuild, resume, skip or at")
	}
	verb, rest := args[0], args[1:]
	if isHelp(verb) {
		fs.Usage()
		return flag.ErrHelp
	}
	var name string
	if verb != "list" && len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
	}
	if name == "" && verb != "list" && fs.NArg() > 0 { // flags before the name, maybe after it too
		name = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("projections %s: unexpected %q", verb, fs.Arg(0))
	}
	switch verb {
	case "list":
	case "rebuild", "resume", "skip", "at":
		if name == "" {
			return fmt.Errorf("projections %s: name the projection (see 'tideline projections list')", verb)
		}
	default:
		return fmt.Errorf("projections: unknown verb %q (want list, rebuild, resume, skip or at)", verb)
	}
	if verb == "skip" && (*position == 0 || *reason == "") {
		return fmt.Errorf("projections skip: --position (where %s is stopped) and --reason are required", name)
	}
	var atReq *adminv1.ProjectionAtRequest
	if verb == "at" {
		if (*position == 0) == (*at == "") {
			return fmt.Errorf("projections at: give --position N or --time T, one of them")
		}
		atReq = &adminv1.ProjectionAtRequest{Name: name, Position: *position}
		if *at != "" {
			t, err := time.Parse(time.RFC3339Nano, *at)
			if err != nil {
				return fmt.Errorf("projections at: --time: %w", err)
			}
			atReq.Time = timestamppb.New(t)
		}
	}
	tokens, err := api.LoadTokens(*data)
	if err != nil {
		return err
	}
	tok, err := tokens.Issue(auth.Principal{Subject: "cli", Role: auth.Admin}, 10*time.Minute)
	if err != nil {
		return err
	}
	client := adminv1connect.NewAdminServiceClient(http.DefaultClient, *server)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	switch verb {
	case "list":
		res, err := client.ListProjections(ctx, adminRequest(&adminv1.ListProjectionsRequest{}, tok))
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "NAME\tVERSION\tSTATE\tPOSITION\tLAG\tSTOPPED_AT\tREASON")
		for _, p := range res.Msg.Projections {
			stoppedAt := "-"
			if p.State == adminv1.ProjectionState_PROJECTION_STATE_STOPPED {
				stoppedAt = fmt.Sprint(p.StoppedAt)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\n", p.Name, p.Version, stateName(p.State), p.Position, p.Lag, stoppedAt, p.Reason)
		}
		fmt.Fprintf(tw, "(stream last position %d)\n", res.Msg.LastPosition)
	case "rebuild":
		res, err := client.RebuildProjection(ctx, adminRequest(&adminv1.RebuildProjectionRequest{Name: name}, tok))
		if err != nil {
			return err
		}
		s := res.Msg.Status
		fmt.Fprintf(tw, "rebuilt %s v%d to position %d in %d ms (%.0f events/s), lag %d\n",
			s.Name, s.Version, s.Position, res.Msg.DurationMs, res.Msg.EventsPerSecond, s.Lag)
	case "resume":
		res, err := client.ResumeProjection(ctx, adminRequest(&adminv1.ResumeProjectionRequest{Name: name}, tok))
		if err != nil {
			return err
		}
		s := res.Msg.Status
		fmt.Fprintf(tw, "resumed %s: %s at position %d, lag %d\n", s.Name, stateName(s.State), s.Position, s.Lag)
	case "skip":
		res, err := client.SkipProjectionCommit(ctx, adminRequest(&adminv1.SkipProjectionCommitRequest{Name: name, Position: *position, Reason: *reason}, tok))
		if err != nil {
			return err
		}
		s := res.Msg.Status
		fmt.Fprintf(tw, "recorded at position %d: %s skips the commit at %d; now %s at position %d, lag %d\n",
			res.Msg.DecisionPosition, s.Name, *position, stateName(s.State), s.Position, s.Lag)
		if s.State == adminv1.ProjectionState_PROJECTION_STATE_STOPPED {
			fmt.Fprintf(tw, "%s stopped again at %d: %s\n", s.Name, s.StoppedAt, s.Reason)
		}
	case "at":
		res, err := client.ProjectionAt(ctx, adminRequest(atReq, tok))
		if err != nil {
			return err
		}
		m := res.Msg
		fmt.Fprintf(stderr, "%s v%d as of position %d (from the kept snapshot at %d, %d messages replayed, %d ms)\n",
			m.Name, m.Version, m.Position, m.SnapshotPosition, m.Replayed, m.DurationMs)
		fmt.Fprintln(stdout, m.SummaryJson)
	}
	return nil
}

func adminRequest[T any](msg *T, tok string) *connect.Request[T] {
	req := connect.NewRequest(msg)
	req.Header().Set("Authorization", "Bearer "+tok)
	return req
}

// stateName is a state as the CLI prints it: running, rebuilding, stopped,
// not_running.
func stateName(s adminv1.ProjectionState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "PROJECTION_STATE_"))
}
