package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/auth"
)

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory of the server whose key signs the token")
	sub := fs.String("sub", "", "subject: the user, device or service id (required)")
	role := fs.String("role", "", "role: admin, walker, rider, labeler, enterprise, device or service (required)")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "validity")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" || *role == "" {
		return fmt.Errorf("token: --sub and --role are required")
	}
	r, err := auth.ParseRole(*role)
	if err != nil {
		return fmt.Errorf("--role: %w", err)
	}
	tokens, err := api.LoadTokens(*data)
	if err != nil {
		return err
	}
	tok, err := tokens.Issue(auth.Principal{Subject: *sub, Role: r}, *ttl)
	if err != nil {
		return fmt.Errorf("--sub: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
