package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/cmd/tideline/server"
)

const natsUserUsage = `usage:
  tideline nats-user add NAME [--role reader|ops] [--data DIR]   register a NATS client; prints its credentials file
  tideline nats-user revoke NAME [--data DIR]                    refuse it from now on (a connected one is cut)
  tideline nats-user list [--data DIR]                           the registered users

Users connect to 'tideline serve --nats-listen ADDR' with their credentials
file and their own inbox prefix, and reach JetStream through their role's
domain: reader (read EVENTS: stream info, get, Direct Get, ordered and other
ephemeral pull consumers; subscribe to ev.>) or ops (account, stream and
consumer info and lists; advisories; no event data).
`

// natsUserCmd manages the registry of NATS client users. A running
// `tideline serve --nats-listen` picks up changes within a second.
func natsUserCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, natsUserUsage)
		return errors.New("nats-user: no subcommand")
	}
	sub, args := args[0], args[1:]
	if isHelp(sub) {
		fmt.Fprint(stderr, natsUserUsage)
		return flag.ErrHelp
	}
	fs := newFlags("nats-user "+sub, natsUserUsage, stderr)
	dataDir := fs.String("data", "./data", "the server's data directory")
	role := fs.String("role", natsserver.RoleReader, "reader or ops (add)")
	// Flags may come before or after the name.
	var name string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	dir := server.NATSUserDir(*dataDir)
	switch sub {
	case "add":
		if name == "" {
			fmt.Fprint(stderr, natsUserUsage)
			return errors.New("nats-user add: needs NAME")
		}
		usr, creds, err := natsserver.AddUser(dir, name, *role)
		if err != nil {
			return err
		}
		path, _ := filepath.Abs(filepath.Join(dir, name+".creds"))
		if err := writeSecret(path, creds); err != nil {
			return err
		}
		fmt.Fprintln(stdout, path)
		domain := natsserver.ReaderDomain
		if usr.Role == natsserver.RoleOps {
			domain = natsserver.OpsDomain
		}
		fmt.Fprintf(stderr, `%s (%s) connects with:
  nats.Connect(url, nats.UserCredentials(%q), nats.CustomInboxPrefix(%q))
  jetstream.NewWithDomain(nc, %q)
  or: nats --server URL --creds %s --inbox-prefix %s --js-domain %s ...
`, usr.Name, usr.Role, path, natsserver.UserInboxPrefix(usr.Name), domain, path, natsserver.UserInboxPrefix(usr.Name), domain)
		return nil
	case "revoke":
		if name == "" {
			fmt.Fprint(stderr, natsUserUsage)
			return errors.New("nats-user revoke: needs NAME")
		}
		if _, err := natsserver.RevokeUser(dir, name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", name)
		return nil
	case "list":
		users, err := natsserver.ListUsers(dir)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tROLE\tSTATUS\tCREATED")
		for _, u := range users {
			status := "active"
			if u.Revoked {
				status = "revoked"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, status, u.CreatedAt.Format("2006-01-02T15:04:05Z"))
		}
		return tw.Flush()
	}
	fmt.Fprint(stderr, natsUserUsage)
	return fmt.Errorf("nats-user: unknown subcommand %q", sub)
}

// writeSecret writes a credentials file readable by its owner only.
func writeSecret(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if err := f.Chmod(0o600); err != nil { // an older file may have had looser bits
		f.Close()
		return fmt.Errorf("credentials: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("credentials: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	return nil
}
