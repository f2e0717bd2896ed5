package natsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
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

// dropRevoked removes from conns (name → connection ids) every name that
// is no longer live, calling revoked for each, and returns the ids of
// their connections to cut. The caller holds the registry's lock.
func dropRevoked[V any](conns map[string]map[uint64]V, live func(name string) bool, revoked func(name string)) []uint64 {
	var kick []uint64
	for name, cids := range conns {
		if live(name) {
			continue
		}
		for cid := range cids {
			kick = append(kick, cid)
		}
		delete(conns, name)
		revoked(name)
	}
	return kick
}

// disconnect cuts the given client connections of srv (nil: none yet).
func disconnect(srv *server.Server, cids []uint64) {
	if srv == nil {
		return
	}
	for _, cid := range cids {
		_ = srv.DisconnectClientByID(cid) // already gone is fine
	}
}

// watchRegistry calls reload every interval until ctx ends, logging its
// errors; what names the registry.
func watchRegistry(ctx context.Context, interval time.Duration, reload func() (bool, error), log *slog.Logger, what string) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := reload(); err != nil {
				log.Error(what+" registry reload", "err", err)
			}
		}
	}
}
