package accounts

import (
	_ "embed"
	"strings"
)

// commonPasswords is a short list of passwords that top the public
// breach lists (lower-case, one a line). Most of those lists' top
// thousand are shorter than MinPasswordLen and so refused anyway; this
// list holds the long ones people pick most, and the short classics.
//
//go:embed common-passwords.txt
var commonPasswords string

var common = func() map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Fields(commonPasswords) {
		m[strings.ToLower(l)] = true
	}
	return m
}()
