// Command tideline is the Tideline server and its admin CLI.
//
//	tideline serve        run the server (embedded NATS + Connect API)
//	tideline token        print a bearer token for a user and role
//	tideline projections  list read models; rebuild, resume or skip a commit
//	tideline device       register, revoke and list edge devices
//	tideline nats-user    register, revoke and list NATS client users
//	tideline bench        measure Tideline against raw JetStream and connect-go
//	tideline demo         drive a realistic day through the public API
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tideline/tideline/cmd/tideline/internal/bench"
	"github.com/tideline/tideline/cmd/tideline/internal/demo"
)

const usage = `tideline: event-sourced streaming backend on NATS JetStream

usage:
  tideline serve [--data DIR] [--listen ADDR] [flags]   run the server
  tideline token --sub ID --role ROLE [--data DIR]      print a bearer token
  tideline projections list|rebuild|resume|skip [NAME]  operate read models
  tideline device add|revoke|list [ID] [flags]          manage edge devices
  tideline nats-user add|revoke|list [NAME] [flags]     manage NATS clients (--nats-listen)
  tideline bench [--json] [flags]                       run the benchmarks
  tideline demo [--server URL --data DIR] [flags]       drive a realistic day through the API

Run 'tideline COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tideline:", err)
		}
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		return serveCmd(ctx, args[1:], stderr)
	case "token":
		return tokenCmd(args[1:], stdout, stderr)
	case "projections":
		return projectionsCmd(ctx, args[1:], stdout, stderr)
	case "device":
		return deviceCmd(args[1:], stdout, stderr)
	case "nats-user":
		return natsUserCmd(args[1:], stdout, stderr)
	case "bench":
		return bench.Run(ctx, args[1:], stdout, stderr)
	case "demo":
		return demo.Run(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
