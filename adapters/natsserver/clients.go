package natsserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/wire"
)

// Roles a NATS user may have. Each role reaches JetStream only through
// its own API prefix, served by the guard (guard.go), never $JS.API.
const (
	// RoleReader reads events: it subscribes to ev.> and reads the events
	// stream (Config.EventsStream) through JetStream (stream info, get and
	// Direct Get, ordered and other ephemeral pull consumers of its own)
	// with the JetStream domain ReaderDomain. It writes nothing, reads no
	// other stream and touches no one else's consumer.
	RoleReader = "reader"
	// RoleOps monitors: account, stream and consumer info and listings
	// with the JetStream domain OpsDomain, and JetStream advisories and
	// metrics (not the API audit). It reads no event.
	RoleOps = "ops"
)

// ReaderDomain and OpsDomain are the JetStream domains readers and ops
// users pass to their client (jetstream.NewWithDomain, nats --js-domain):
// their API requests go to $JS.<domain>.API.>, where the guard checks and
// forwards them.
const (
	ReaderDomain = "read"
	OpsDomain    = "ops"
)

// UserInboxPrefix is the only inbox a NATS user may receive on: its
// client must set it (nats.CustomInboxPrefix, nats --inbox-prefix), so
// no user sees another's replies or the hub's own.
func UserInboxPrefix(name string) string { return "_INBOX." + name }

// NATSUser is one registered NATS client user, as stored in the registry
// directory (one <name>.json per user).
type NATSUser struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// NKey is the public half of the user's key pair; the seed is only in
	// the user's credentials file.
	NKey      string     `json:"nkey"`
	CreatedAt time.Time  `json:"created_at"`
	Revoked   bool       `json:"revoked,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// userPermissions are what a role may publish and subscribe to on the
// hub. Nothing else: in particular no $JS.API subject at all, since any
// JetStream API request lets its sender choose where the server publishes
// the response, ev.> included (the stream would store it as an event).
func userPermissions(role, name string) *server.Permissions {
	inbox := UserInboxPrefix(name) + ".>"
	switch role {
	case RoleReader:
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{"$JS." + ReaderDomain + ".API.>"}},
			Subscribe: &server.SubjectPermission{Allow: []string{inbox, wire.EventsSubjects}},
		}
	case RoleOps:
		return &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{"$JS." + OpsDomain + ".API.>"}},
			// Advisories and metrics, but not the API audit, which carries
			// every API request and response (Direct Gets of events too).
			Subscribe: &server.SubjectPermission{Allow: []string{inbox, "$JS.EVENT.>"}, Deny: []string{"$JS.EVENT.ADVISORY.API", "$JS.EVENT.ADVISORY.API.>"}},
		}
	}
	return nil
}

func validRole(role string) bool { return role == RoleReader || role == RoleOps }

// Users is the registry of NATS client users (analytics readers, ops),
// the only clients besides the hub itself admitted on the client port.
// They authenticate with an nkey (signature of the server's nonce; the
// credentials file's JWT is not used), get their role's
// permissions, and are followed while the server runs: added users may
// connect and revoked ones are disconnected at once, without a restart.
// Safe for concurrent use.
type Users struct {
	dir string
	log *slog.Logger

	mu     sync.Mutex
	byKey  map[string]NATSUser
	byName map[string]NATSUser
	conns  map[string]map[uint64]struct{} // user name → client connection ids
	srv    *server.Server
	stamp  string
}

// OpenUsers loads the registry in dir (created if missing).
func OpenUsers(dir string, log *slog.Logger) (*Users, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats user registry: %w", err)
	}
	u := &Users{dir: dir, log: log, conns: map[string]map[uint64]struct{}{}}
	if _, err := u.Reload(); err != nil {
		return nil, err
	}
	return u, nil
}

func (u *Users) attach(s *server.Server) {
	u.mu.Lock()
	u.srv = s
	u.mu.Unlock()
}

// active reports whether name is a registered user not revoked.
func (u *Users) active(name string) (NATSUser, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	usr, ok := u.byName[name]
	return usr, ok && !usr.Revoked
}

// check authenticates a TCP client connection as a registered user: the
// one whose key signed this connection's nonce.
func (u *Users) check(c server.ClientAuthentication) bool {
	opts := c.GetOpts()
	nonce := c.GetNonce()
	u.mu.Lock()
	usr, ok := u.byKey[opts.Nkey]
	if opts.Nkey == "" {
		// A creds file (nats.UserCredentials) sends its JWT and no nkey,
		// and a server without operator JWTs drops the JWT before asking
		// us (server/client.go, processConnect). The signature still
		// proves the key: find the active user whose key made it.
		for _, cand := range u.byName {
			if !cand.Revoked && verifyNonce(cand.NKey, opts.Sig, nonce) {
				usr, ok = cand, true
				break
			}
		}
	}
	srv := u.srv
	u.mu.Unlock()
	perms := userPermissions(usr.Role, usr.Name) // nil would mean every right: an unknown role gets none
	if !ok || usr.Revoked || srv == nil || perms == nil || !verifyNonce(usr.NKey, opts.Sig, nonce) {
		u.log.Warn("nats client refused", "nkey", opts.Nkey, "user", usr.Name, "role", usr.Role, "known", ok, "revoked", usr.Revoked, "remote", addr(c))
		return false
	}
	c.RegisterUser(&server.User{
		Username:    "nats-user:" + usr.Name,
		Account:     srv.GlobalAccount(),
		Permissions: perms,
	})
	u.mu.Lock()
	if u.conns[usr.Name] == nil {
		u.conns[usr.Name] = map[uint64]struct{}{}
	}
	u.conns[usr.Name][c.GetID()] = struct{}{}
	u.mu.Unlock()
	u.log.Info("nats client connected", "user", usr.Name, "role", usr.Role, "remote", addr(c))
	return true
}

// Reload rereads the registry directory and disconnects the users that
// were revoked or removed. It reports whether anything changed.
func (u *Users) Reload() (bool, error) {
	stamp, err := dirStamp(u.dir)
	if err != nil {
		return false, fmt.Errorf("nats user registry: %w", err)
	}
	u.mu.Lock()
	same := stamp == u.stamp && u.byName != nil
	u.mu.Unlock()
	if same {
		return false, nil
	}
	users, err := ListUsers(u.dir)
	if err != nil {
		return false, err
	}
	byKey, byName := make(map[string]NATSUser, len(users)), make(map[string]NATSUser, len(users))
	for _, usr := range users {
		byKey[usr.NKey], byName[usr.Name] = usr, usr
	}
	u.mu.Lock()
	u.byKey, u.byName, u.stamp = byKey, byName, stamp
	kick := dropRevoked(u.conns, func(name string) bool { usr, ok := byName[name]; return ok && !usr.Revoked },
		func(name string) { u.log.Info("nats user revoked: disconnecting", "user", name) })
	srv := u.srv
	u.mu.Unlock()
	disconnect(srv, kick)
	return true, nil
}

// Watch reloads the registry every interval until ctx ends.
func (u *Users) Watch(ctx context.Context, interval time.Duration) {
	watchRegistry(ctx, interval, u.Reload, u.log, "nats user")
}

// ListUsers returns the users registered in dir, sorted by name.
func ListUsers(dir string) ([]NATSUser, error) {
	users, err := readRegistry[NATSUser](dir, "nats user")
	sort.Slice(users, func(i, j int) bool { return users[i].Name < users[j].Name })
	return users, err
}

func readUser(path string) (NATSUser, error) { return readEntry[NATSUser](path, "nats user") }

// ErrUserExists is returned by AddUser for a name already registered.
var ErrUserExists = errors.New("nats user already registered")

// ErrUserNotFound is returned by RevokeUser for an unknown name.
var ErrUserNotFound = errors.New("nats user not registered")

// AddUser registers a new user in dir with a fresh nkey pair and returns
// it with its credentials file's contents: a standard NATS creds file
// (a user JWT and the seed) that nats.UserCredentials, nats.NkeyOptionFromSeed
// and `nats --creds` all read. The registry keeps only the public key.
func AddUser(dir, name, role string) (NATSUser, []byte, error) {
	if err := es.ValidateToken("nats user name", name); err != nil {
		return NATSUser{}, nil, err
	}
	if !validRole(role) {
		return NATSUser{}, nil, es.Invalidf("role", "want %q or %q, got %q", RoleReader, RoleOps, role)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return NATSUser{}, nil, fmt.Errorf("nats user registry: %w", err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return NATSUser{}, nil, fmt.Errorf("nats user key: %w", err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	creds, err := userCreds(name, pub, seed)
	if err != nil {
		return NATSUser{}, nil, err
	}
	usr := NATSUser{Name: name, Role: role, NKey: pub, CreatedAt: time.Now().UTC()}
	b, _ := json.MarshalIndent(usr, "", "  ")
	f, err := os.OpenFile(filepath.Join(dir, name+".json"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return NATSUser{}, nil, fmt.Errorf("%w: %s", ErrUserExists, name)
	}
	if err != nil {
		return NATSUser{}, nil, fmt.Errorf("nats user registry: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return NATSUser{}, nil, fmt.Errorf("nats user registry: %w", err)
	}
	if err := f.Close(); err != nil {
		return NATSUser{}, nil, fmt.Errorf("nats user registry: %w", err)
	}
	return usr, creds, nil
}

// userCreds formats a creds file. The hub authenticates the key, not the
// JWT (it runs no operator or account JWTs): the JWT is signed by a
// throwaway account key only because the format wants a signed one, and
// carries the user's public key and name.
func userCreds(name, pub string, seed []byte) ([]byte, error) {
	acct, err := nkeys.CreateAccount()
	if err != nil {
		return nil, fmt.Errorf("nats user creds: %w", err)
	}
	claims := jwt.NewUserClaims(pub)
	claims.Name = name
	token, err := claims.Encode(acct)
	if err != nil {
		return nil, fmt.Errorf("nats user creds: %w", err)
	}
	return jwt.FormatUserConfig(token, seed)
}

// RevokeUser marks a user revoked: a running hub disconnects it and
// refuses it from then on. Revoking twice is not an error.
func RevokeUser(dir, name string) (NATSUser, error) {
	if err := es.ValidateToken("nats user name", name); err != nil {
		return NATSUser{}, err
	}
	path := filepath.Join(dir, name+".json")
	usr, err := readUser(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NATSUser{}, fmt.Errorf("%w: %s", ErrUserNotFound, name)
	}
	if err != nil {
		return NATSUser{}, err
	}
	if usr.Revoked {
		return usr, nil
	}
	now := time.Now().UTC()
	usr.Revoked, usr.RevokedAt = true, &now
	b, _ := json.MarshalIndent(usr, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return NATSUser{}, fmt.Errorf("nats user registry: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return NATSUser{}, fmt.Errorf("nats user registry: %w", err)
	}
	return usr, nil
}

// clientAuth is the server's one authenticator. nats-server consults a
// custom authenticator instead of its own users and nkeys whenever one is
// set (server/auth.go, isClientAuthorized), and for leaf nodes as well, so
// it dispatches: in-process connections are the hub itself and keep full
// rights; leaf nodes are edge devices (Devices); any other client must be
// a registered NATS user (Users). With no registry, only the hub connects.
type clientAuth struct {
	devices *Devices
	users   *Users
}

var _ server.Authentication = clientAuth{}

func (a clientAuth) Check(c server.ClientAuthentication) bool {
	switch c.Kind() {
	case server.LEAF:
		return a.devices != nil && a.devices.Check(c)
	case server.CLIENT:
		if inProcess(c) {
			return true
		}
		if a.users == nil {
			slog.Warn("nats client refused: no users registry", "remote", addr(c))
			return false
		}
		return a.users.check(c)
	}
	return false
}

// inProcess reports whether c came through server.InProcessConn, which
// hands the client one end of a net.Pipe: no network peer has a "pipe"
// address.
func inProcess(c server.ClientAuthentication) bool {
	a := c.RemoteAddress()
	if a == nil {
		return false
	}
	_, isTCP := a.(*net.TCPAddr)
	return !isTCP && a.Network() == "pipe"
}
