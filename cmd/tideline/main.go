// Command tideline is the Tideline server and its admin CLI.
//
//	tideline serve        run the server (embedded NATS + Connect API)
//	tideline token        print a bearer token for a user and role
//	tideline projections  list read models; rebuild, resume or skip a commit
//	tideline device       register, revoke and list edge devices
//	tideline nats-user    register, revoke and list NATS client users
//	tideline cluster-import  copy a server alone's store into a NATS cluster
//	tideline bench        measure Tideline against raw JetStream and connect-go
//	tideline demo         drive a realistic day through the public API
//	tideline version      print the version, VCS revision and Go version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/tideline/tideline/cmd/tideline/internal/bench"
	"github.com/tideline/tideline/cmd/tideline/internal/demo"
	"github.com/tideline/tideline/internal/version"
)

const usage = `tideline: event-sourced streaming backend on NATS JetStream

usage:
  tideline serve [--data DIR] [--listen ADDR] [flags]   run the server
  tideline token --sub ID --role ROLE [--data DIR]      print a bearer token
  tideline token revoke JTI|TOKEN [--data DIR]          refuse a token from now on
  tideline projections list|rebuild|resume|skip [NAME]  operate read models
  tideline export [--format jsonl|parquet] [flags]      export events for analysis
  tideline device add|revoke|list [ID] [flags]          manage edge devices
  tideline nats-user add|revoke|list [NAME] [flags]     manage NATS clients (--nats-listen)
  tideline cluster-import --data DIR --nats-url URL     copy a server alone's store into a NATS cluster
  tideline bench [--json] [flags]                       run the benchmarks
  tideline demo [--server URL --data DIR] [flags]       drive a realistic day through the API
  tideline version                                      print the version and exit

Run 'tideline COMMAND -h' (or 'tideline help COMMAND') for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := exitCode(run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr)
	stop()
	os.Exit(code)
}

// exitCode reports err on stderr and returns the process's exit status:
// 0 for success and for -h/--help (flag.ErrHelp: the usage was printed),
// 2 for any other error.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "tideline:", err)
	return 2
}

// newFlags returns the flag set of `tideline NAME`. Its usage (printed
// on -h, and on a bad flag) is the command's usage text, then its flags.
func newFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), strings.TrimRight(usage, "\n"))
		fmt.Fprintln(fs.Output(), "\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// isHelp reports whether arg asks for help instead of naming a subcommand.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
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
	case "export":
		return exportCmd(ctx, args[1:], stdout, stderr)
	case "device":
		return deviceCmd(args[1:], stdout, stderr)
	case "nats-user":
		return natsUserCmd(args[1:], stdout, stderr)
	case "cluster-import":
		return clusterImportCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		return bench.Run(ctx, args[1:], stdout, stderr)
	case "demo":
		return demo.Run(ctx, args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, version.String("tideline"))
		return nil
	case "help", "-h", "-help", "--help":
		if len(args) > 1 && !isHelp(args[1]) { // tideline help COMMAND
			return run(ctx, []string{args[1], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
