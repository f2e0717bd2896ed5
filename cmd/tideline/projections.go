package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
)

func projectionsCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("projections", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tideline projections list|rebuild NAME [--server URL] [--data DIR]")
		fs.PrintDefaults()
	}
	server := fs.String("server", "http://127.0.0.1:8080", "URL of the running server")
	data := fs.String("data", "./data", "the server's data directory (its key signs an admin token)")
	if len(args) == 0 {
		fs.Usage()
		return fmt.Errorf("projections: want list or rebuild NAME")
	}
	verb, rest := args[0], args[1:]
	var name string
	if verb == "rebuild" && len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
		name, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return err
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
		req := connect.NewRequest(&adminv1.ListProjectionsRequest{})
		req.Header().Set("Authorization", "Bearer "+tok)
		res, err := client.ListProjections(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintln(tw, "NAME\tVERSION\tPOSITION\tLAG\tREBUILDING")
		for _, p := range res.Msg.Projections {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%v\n", p.Name, p.Version, p.Position, p.Lag, p.Rebuilding)
		}
		fmt.Fprintf(tw, "(stream last position %d)\n", res.Msg.LastPosition)
		return nil
	case "rebuild":
		if name == "" {
			return fmt.Errorf("projections rebuild: name the projection (see 'tideline projections list')")
		}
		req := connect.NewRequest(&adminv1.RebuildProjectionRequest{Name: name})
		req.Header().Set("Authorization", "Bearer "+tok)
		res, err := client.RebuildProjection(ctx, req)
		if err != nil {
			return err
		}
		s := res.Msg.Status
		fmt.Fprintf(tw, "rebuilt %s v%d to position %d in %d ms (%.0f events/s), lag %d\n",
			s.Name, s.Version, s.Position, res.Msg.DurationMs, res.Msg.EventsPerSecond, s.Lag)
		return nil
	}
	return fmt.Errorf("projections: unknown verb %q (want list or rebuild)", verb)
}
