package natsserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/wire"
)

// Device is one registered edge device, as stored in the registry
// directory (one <id>.json per device).
type Device struct {
	ID      string `json:"id"`
	RiderID string `json:"rider_id"`
	// NKey is the public half of the device's key pair; the seed is only in
	// the device's credentials file.
	NKey      string     `json:"nkey"`
	CreatedAt time.Time  `json:"created_at"`
	Revoked   bool       `json:"revoked,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// HubDomain is the hub's JetStream domain when it accepts edge devices:
// their agents run a JetStream of their own (domain edge) on the leaf
// link, and the two must differ. Devices do not call the hub's API.
const HubDomain = "hub"

// devicePermissions confine a device (seen from the device: what it may
// publish into the hub and receive from it) to requests to the device gate
// (adapters/devicegate) on its own lanes, a commit and where the hub
// stands (wire.DeviceSubjects), and replies on its own inbox. It writes no
// stream and calls no JetStream API: JetStream answers a request on whatever reply subject
// the requester names, and an answer on ev.<anything> would be stored in
// EVENTS; the device gate answers only on the device's inbox.
func devicePermissions(id string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: wire.DeviceSubjects(id)},
		Subscribe: &server.SubjectPermission{Allow: []string{wire.DeviceInboxPrefix(id) + ".>"}},
	}
}

// Devices is the hub's device registry: it authenticates edge devices
// connecting as leaf nodes (nkey signature of the server's nonce), binds
// each to its permissions, and follows the registry directory while the
// server runs, so added devices may connect and revoked ones are
// disconnected at once, without a restart.
//
// nats-server cannot reload leaf node users (server/reload.go refuses a
// change of LeafNode.Users), so Devices plugs in as the server's custom
// authentication, which it consults for leaf nodes when no leaf users are
// configured. Client (non-leaf) connections are let through unchanged.
// Safe for concurrent use.
type Devices struct {
	dir string
	log *slog.Logger

	mu     sync.Mutex
	byKey  map[string]Device
	byID   map[string]Device
	conns  map[string]map[uint64]time.Time // device id → leaf connection ids, with when each authenticated
	srv    *server.Server
	domain string
	stamp  string

	refused refusals // rate-limits the refusal warning (refusals.go)
}

var _ server.Authentication = (*Devices)(nil)

// OpenDevices loads the registry in dir (created if missing).
func OpenDevices(dir string, log *slog.Logger) (*Devices, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("device registry: %w", err)
	}
	d := &Devices{dir: dir, log: log, conns: map[string]map[uint64]time.Time{}}
	if _, err := d.Reload(); err != nil {
		return nil, err
	}
	return d, nil
}

// Lookup returns the registered device id (revoked ones too).
func (d *Devices) Lookup(id string) (Device, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dev, ok := d.byID[id]
	return dev, ok
}

// Registered returns what the registry says of device id in the safety
// context's terms (adapters/devicegate's Registry): its rider, and when it
// was revoked. An unknown id has no rider.
func (d *Devices) Registered(id string) safety.RegisteredDevice {
	dev, ok := d.Lookup(id)
	if !ok {
		return safety.RegisteredDevice{ID: id}
	}
	r := safety.RegisteredDevice{ID: id, RiderID: dev.RiderID}
	if dev.Revoked {
		r.RevokedAt = time.Unix(0, 1) // revoked before the time was kept: since always
		if dev.RevokedAt != nil {
			r.RevokedAt = *dev.RevokedAt
		}
	}
	return r
}

// Connected returns every registered device that is not revoked, and
// whether it has a leaf connection up now (as List says). Safe for
// concurrent use.
func (d *Devices) Connected() (map[string]bool, error) {
	devs, err := d.List()
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(devs))
	for _, dev := range devs {
		if !dev.Revoked {
			out[dev.ID] = dev.Connected
		}
	}
	return out, nil
}

func (d *Devices) attach(s *server.Server, domain string) {
	d.mu.Lock()
	d.srv = s
	d.domain = domain
	d.mu.Unlock()
}

// Check implements server.Authentication. It is called by the server.
func (d *Devices) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.LEAF {
		return true
	}
	opts := c.GetOpts()
	d.mu.Lock()
	dev, ok := d.byKey[opts.Nkey]
	srv := d.srv
	d.mu.Unlock()
	if !ok || dev.Revoked || srv == nil || !verifyNonce(opts.Nkey, opts.Sig, c.GetNonce()) {
		if n, say := d.refused.note(opts.Nkey, time.Now()); say {
			d.log.Warn("edge device refused", "nkey", opts.Nkey, "known", ok, "revoked", dev.Revoked, "remote", addr(c), "refusals", n)
		}
		return false
	}
	c.RegisterUser(&server.User{
		Username:    "device:" + dev.ID,
		Account:     srv.GlobalAccount(),
		Permissions: devicePermissions(dev.ID),
	})
	d.mu.Lock()
	if d.conns[dev.ID] == nil {
		d.conns[dev.ID] = map[uint64]time.Time{}
	}
	d.conns[dev.ID][c.GetID()] = time.Now()
	d.mu.Unlock()
	d.log.Info("edge device connected", "device", dev.ID, "rider", dev.RiderID, "remote", addr(c))
	return true
}

// DeviceState is a registered device and whether it is connected.
type DeviceState struct {
	Device
	// Connected says a leaf-node link of the device is open now.
	Connected bool
}

// List returns every registered device (revoked ones too), sorted by id,
// each with whether one of its leaf-node links is open. Links that have
// closed are forgotten on the way.
// linkGrace is how long after it authenticated a device's link may be
// missing from the server's leaf links before List forgets it: the server
// lists a leaf link only once its handshake is done.
const linkGrace = 30 * time.Second

func (d *Devices) List() ([]DeviceState, error) {
	d.mu.Lock()
	srv := d.srv
	d.mu.Unlock()
	open := map[uint64]bool{}
	if srv != nil {
		lz, err := srv.Leafz(&server.LeafzOptions{})
		if err != nil {
			return nil, fmt.Errorf("device registry: leaf links: %w", err)
		}
		for _, l := range lz.Leafs {
			open[l.ID] = true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DeviceState, 0, len(d.byID))
	for id, dev := range d.byID {
		st := DeviceState{Device: dev}
		for cid, authenticated := range d.conns[id] {
			switch {
			case open[cid]:
				st.Connected = true
			case time.Since(authenticated) > linkGrace:
				// Closed, or never linked. A link authenticated moments
				// ago may not be among the leaf links yet: it is kept.
				delete(d.conns[id], cid)
			}
		}
		if len(d.conns[id]) == 0 {
			delete(d.conns, id)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func addr(c server.ClientAuthentication) string {
	if a := c.RemoteAddress(); a != nil {
		return a.String()
	}
	return ""
}

func verifyNonce(pub, sig string, nonce []byte) bool {
	if pub == "" || sig == "" || len(nonce) == 0 {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		if raw, err = base64.StdEncoding.DecodeString(sig); err != nil {
			return false
		}
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return false
	}
	return kp.Verify(nonce, raw) == nil
}

// Reload rereads the registry directory and disconnects the devices that
// were revoked or removed. It reports whether anything changed.
func (d *Devices) Reload() (bool, error) {
	stamp, err := dirStamp(d.dir)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	same := stamp == d.stamp && d.byID != nil
	d.mu.Unlock()
	if same {
		return false, nil
	}
	devs, err := ListDevices(d.dir)
	if err != nil {
		return false, err
	}
	byKey, byID := make(map[string]Device, len(devs)), make(map[string]Device, len(devs))
	for _, dev := range devs {
		byKey[dev.NKey], byID[dev.ID] = dev, dev
	}
	d.mu.Lock()
	d.byKey, d.byID, d.stamp = byKey, byID, stamp
	kick := dropRevoked(d.conns, func(id string) bool { dev, ok := byID[id]; return ok && !dev.Revoked },
		func(id string) { d.log.Info("edge device revoked: disconnecting", "device", id) })
	srv := d.srv
	d.mu.Unlock()
	disconnect(srv, kick)
	return true, nil
}

// Watch reloads the registry every interval until ctx ends.
func (d *Devices) Watch(ctx context.Context, interval time.Duration) {
	watchRegistry(ctx, interval, d.Reload, d.log, "device")
}

// dirStamp fingerprints the registry's files (names, sizes, mtimes).
func dirStamp(dir string) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("device registry: %w", err)
	}
	var b strings.Builder
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("device registry: %w", err)
		}
		fmt.Fprintf(&b, "%s %d %d\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	return b.String(), nil
}

// ListDevices returns the devices registered in dir, sorted by id.
func ListDevices(dir string) ([]Device, error) {
	devs, err := readRegistry[Device](dir, "device")
	sort.Slice(devs, func(i, j int) bool { return devs[i].ID < devs[j].ID })
	return devs, err
}

func readDevice(path string) (Device, error) { return readEntry[Device](path, "device") }

// ErrDeviceExists is returned by AddDevice for an id already registered.
var ErrDeviceExists = errors.New("device already registered")

// ErrDeviceNotFound is returned by RevokeDevice for an unknown id.
var ErrDeviceNotFound = errors.New("device not registered")

// AddDevice registers a new device in dir with a fresh nkey pair and
// returns it with the key's seed (the device's secret, to put in its
// credentials file; the registry keeps only the public key).
func AddDevice(dir, id, rider string) (Device, []byte, error) {
	if err := es.ValidateToken("device id", id); err != nil {
		return Device{}, nil, err
	}
	if err := es.ValidateToken("rider id", rider); err != nil {
		return Device{}, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Device{}, nil, fmt.Errorf("device registry: %w", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Device{}, nil, fmt.Errorf("device key: %w", err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	dev := Device{ID: id, RiderID: rider, NKey: pub, CreatedAt: time.Now().UTC()}
	b, _ := json.MarshalIndent(dev, "", "  ")
	path := filepath.Join(dir, id+".json")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return Device{}, nil, fmt.Errorf("%w: %s", ErrDeviceExists, id)
	}
	if err != nil {
		return Device{}, nil, fmt.Errorf("device registry: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return Device{}, nil, fmt.Errorf("device registry: %w", err)
	}
	if err := f.Close(); err != nil {
		return Device{}, nil, fmt.Errorf("device registry: %w", err)
	}
	return dev, seed, nil
}

// RevokeDevice marks a device revoked: a running hub disconnects it and
// refuses it from then on. Revoking twice is not an error.
func RevokeDevice(dir, id string) (Device, error) {
	if err := es.ValidateToken("device id", id); err != nil {
		return Device{}, err
	}
	path := filepath.Join(dir, id+".json")
	dev, err := readDevice(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Device{}, fmt.Errorf("%w: %s", ErrDeviceNotFound, id)
	}
	if err != nil {
		return Device{}, err
	}
	if dev.Revoked {
		return dev, nil
	}
	now := time.Now().UTC()
	dev.Revoked, dev.RevokedAt = true, &now
	b, _ := json.MarshalIndent(dev, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return Device{}, fmt.Errorf("device registry: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return Device{}, fmt.Errorf("device registry: %w", err)
	}
	return dev, nil
}
