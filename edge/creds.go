package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/tideline/tideline/domain/es"
)

// CredsFormat tags a Tideline device credentials file.
const CredsFormat = "tideline-device-creds/v1"

// Creds is a device's credentials file, written by `tideline device add`
// (mode 0600) and read by the agent's --creds. It is JSON:
//
//	{
//	  "format": "tideline-device-creds/v1",
//	  "device_id": "bike-7",            // the device's id on the hub
//	  "rider_id": "alice",              // the rider its events are for
//	  "leaf_user": "UA...",             // public nkey the hub knows it by
//	  "nkey_seed": "SUA...",            // the secret: signs the hub's nonce
//	  "hub_domain": "hub"               // the hub's JetStream domain (kept apart from the agent's own)
//	}
//
// Only nkey_seed is secret; the hub keeps the public key alone.
type Creds struct {
	Format    string `json:"format"`
	DeviceID  string `json:"device_id"`
	RiderID   string `json:"rider_id"`
	LeafUser  string `json:"leaf_user"`
	NKeySeed  string `json:"nkey_seed"`
	HubDomain string `json:"hub_domain"`
}

// Validate checks the fields and that the seed matches leaf_user.
func (c Creds) Validate() error {
	if c.Format != CredsFormat {
		return fmt.Errorf("creds: format %q, want %q", c.Format, CredsFormat)
	}
	if err := es.ValidateToken("creds device_id", c.DeviceID); err != nil {
		return err
	}
	if err := es.ValidateToken("creds rider_id", c.RiderID); err != nil {
		return err
	}
	if c.HubDomain == "" || strings.ContainsAny(c.HubDomain, ". *>") {
		return fmt.Errorf("creds: bad hub_domain %q", c.HubDomain)
	}
	kp, err := nkeys.FromSeed([]byte(c.NKeySeed))
	if err != nil {
		return errors.New("creds: nkey_seed is not a valid nkey seed")
	}
	pub, _ := kp.PublicKey()
	if pub != c.LeafUser {
		return errors.New("creds: nkey_seed does not match leaf_user")
	}
	return nil
}

// LoadCreds reads and validates a credentials file.
func LoadCreds(path string) (Creds, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Creds{}, fmt.Errorf("creds: %w", err)
	}
	var c Creds
	if err := json.Unmarshal(b, &c); err != nil {
		return Creds{}, fmt.Errorf("creds %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Creds{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// WriteCreds writes c to path with mode 0600, refusing to overwrite.
func WriteCreds(path string, c Creds) error {
	if c.Format == "" {
		c.Format = CredsFormat
	}
	if err := c.Validate(); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write creds: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write creds: %w", err)
	}
	return f.Close()
}
