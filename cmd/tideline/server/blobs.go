package server

import (
	"net"

	"github.com/tideline/tideline/adapters/objectstore"
	"github.com/tideline/tideline/adapters/s3"
	"github.com/tideline/tideline/api"
)

// openBlobs sets Main's Blobs (Config.S3's store, else JetStream object
// stores on the server's own connection, refusing puts while the disk
// guard refuses writes) and Links (DATA/keys/blob-links.key; URLs start
// with Config.PublicURL, by default the address the API listens on).
func (m *Main) openBlobs() error {
	c := &m.Config
	var err error
	if c.S3.Endpoint != "" {
		m.Blobs, err = s3.New(c.S3)
	} else {
		var writable func() error
		if m.disk != nil {
			writable = m.disk.Err
		}
		m.Blobs, err = objectstore.New(m.nc, objectstore.Config{Writable: writable, Replicas: m.Store.Replicas()})
	}
	if err != nil {
		return err
	}
	public := c.PublicURL
	if public == "" {
		public = "http://" + m.Addr()
		if host, _, _ := net.SplitHostPort(m.Addr()); net.ParseIP(host).IsUnspecified() {
			c.Logger.Warn("blob links name an address that is not one clients can reach; pass --public-url", "url", public)
		}
	}
	m.Links, err = api.LoadOrCreateLinks(c.DataDir, public)
	return err
}
