package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/edge"
)

const deviceUsage = `usage:
  tideline device add ID --rider RIDER [--data DIR]   register a device; prints its credentials file
  tideline device revoke ID [--data DIR]              refuse it from now on (a connected one is cut)
  tideline device list [--data DIR]                   the registered devices
`

// deviceCmd manages the registry of edge devices. A running
// `tideline serve --leaf-listen` picks up changes within a second.
func deviceCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, deviceUsage)
		return errors.New("device: no subcommand")
	}
	sub, args := args[0], args[1:]
	if isHelp(sub) {
		fmt.Fprint(stderr, deviceUsage)
		return flag.ErrHelp
	}
	fs := newFlags("device "+sub, deviceUsage, stderr)
	dataDir := fs.String("data", "./data", "the server's data directory")
	rider := fs.String("rider", "", "the rider the device belongs to (add)")
	// Flags may come before or after the id.
	var id string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		id, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if id == "" && fs.NArg() > 0 {
		id = fs.Arg(0)
	}
	dir := server.DeviceDir(*dataDir)
	switch sub {
	case "add":
		if id == "" || *rider == "" {
			fmt.Fprint(stderr, deviceUsage)
			return errors.New("device add: needs ID and --rider")
		}
		dev, seed, err := natsserver.AddDevice(dir, id, *rider)
		if err != nil {
			return err
		}
		path := filepath.Join(dir, id+".creds")
		if err := edge.WriteCreds(path, edge.Creds{
			Format: edge.CredsFormat, DeviceID: dev.ID, RiderID: dev.RiderID,
			LeafUser: dev.NKey, NKeySeed: string(seed), HubDomain: natsserver.HubDomain,
		}); err != nil {
			return err
		}
		abs, _ := filepath.Abs(path)
		fmt.Fprintln(stdout, abs)
		return nil
	case "revoke":
		if id == "" {
			fmt.Fprint(stderr, deviceUsage)
			return errors.New("device revoke: needs ID")
		}
		if _, err := natsserver.RevokeDevice(dir, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %s\n", id)
		return nil
	case "list":
		devs, err := natsserver.ListDevices(dir)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tRIDER\tSTATUS\tCREATED")
		for _, d := range devs {
			status := "active"
			if d.Revoked {
				status = "revoked"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.ID, d.RiderID, status, d.CreatedAt.Format("2006-01-02T15:04:05Z"))
		}
		return tw.Flush()
	}
	fmt.Fprint(stderr, deviceUsage)
	return fmt.Errorf("device: unknown subcommand %q", sub)
}
