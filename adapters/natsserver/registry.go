package natsserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// readRegistry reads every <name>.json entry of a registry directory (the
// devices' or the NATS users'), what naming the kind in errors. A missing
// directory is an empty registry, and an entry removed while it is read
// is skipped.
func readRegistry[T any](dir, what string) ([]T, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s registry: %w", what, err)
	}
	var out []T
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		v, err := readEntry[T](filepath.Join(dir, e.Name()), what)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// readEntry reads one registry entry.
func readEntry[T any](path, what string) (T, error) {
	var v T
	b, err := os.ReadFile(path)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("%s file %s: %w", what, path, err)
	}
	return v, nil
}
