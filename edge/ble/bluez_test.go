//go:build linux

package ble_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
	"github.com/tideline/tideline/internal/poll"
)

// This file is a fake BlueZ: the org.bluez objects and methods that
// tinygo.org/x/bluetooth v0.17.0 uses as a central (adapter_linux.go,
// gap_linux.go, gattc_linux.go), served with godbus on a private
// dbus-daemon that DBUS_SYSTEM_BUS_ADDRESS points tinygo at. The Source
// under test runs the real adapter code against it.

const (
	adapterPath = dbus.ObjectPath("/org/bluez/hci0")
	deviceIface = "org.bluez.Device1"
	charIface   = "org.bluez.GattCharacteristic1"
)

// startBus runs a private dbus-daemon that allows everything and points the
// process's system bus at it. It skips the test if dbus-daemon is missing.
func startBus(tb testing.TB) string {
	tb.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		tb.Skip("dbus-daemon not found (Debian package dbus): the fake BlueZ needs a private bus")
	}
	dir, err := os.MkdirTemp("", "bus") // short: a socket path has at most 107 bytes
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	config := filepath.Join(dir, "bus.conf")
	err = os.WriteFile(config, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=`+filepath.Join(dir, "socket")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
`), 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+config, "--nofork", "--nopidfile", "--print-address")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // outlive no crashed test
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if tb.Failed() && stderr.Len() > 0 {
			tb.Logf("dbus-daemon: %s", stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("dbus-daemon printed no address: %v", err)
	}
	addr := strings.TrimSpace(line)
	tb.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)
	// godbus keeps one system bus connection per process: close it while
	// this bus still runs, so the next test connects to its own bus.
	tb.Cleanup(func() {
		if conn, err := dbus.SystemBus(); err == nil {
			conn.Close()
		}
	})
	return addr
}

// fakeBlueZ owns org.bluez on a private bus. Its methods are safe for
// concurrent use: godbus handles each call on a goroutine of its own.
type fakeBlueZ struct {
	tb   testing.TB
	conn *dbus.Conn

	mu          sync.Mutex
	objects     map[dbus.ObjectPath]map[string]*prop.Properties // path → interface → properties
	unseen      []func()                                        // publish devices found by a scan
	discovering bool
	discoveries int
}

func newFakeBlueZ(tb testing.TB) *fakeBlueZ {
	tb.Helper()
	conn, err := dbus.Connect(startBus(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	reply, err := conn.RequestName("org.bluez", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		tb.Fatalf("own org.bluez: %v %v", reply, err)
	}
	f := &fakeBlueZ{
		tb:      tb,
		conn:    conn,
		objects: map[dbus.ObjectPath]map[string]*prop.Properties{},
	}
	if err := conn.Export(objectManager{f}, "/", "org.freedesktop.DBus.ObjectManager"); err != nil {
		tb.Fatal(err)
	}
	if err := conn.Export(adapterMethods{f}, adapterPath, "org.bluez.Adapter1"); err != nil {
		tb.Fatal(err)
	}
	f.export(adapterPath, "org.bluez.Adapter1", map[string]any{
		"Address": "00:1A:7D:DA:71:13",
		"Powered": true,
	})
	return f
}

// export serves the properties of path, which has one interface.
func (f *fakeBlueZ) export(path dbus.ObjectPath, iface string, values map[string]any) *prop.Properties {
	f.tb.Helper()
	props := map[string]*prop.Prop{}
	for name, v := range values {
		props[name] = &prop.Prop{Value: v, Writable: true, Emit: prop.EmitTrue}
	}
	p, err := prop.Export(f.conn, path, prop.Map{iface: props})
	if err != nil {
		f.tb.Fatal(err)
	}
	f.mu.Lock()
	f.objects[path] = map[string]*prop.Properties{iface: p}
	f.mu.Unlock()
	return p
}

type adapterMethods struct{ f *fakeBlueZ }

func (m adapterMethods) SetDiscoveryFilter(map[string]dbus.Variant) *dbus.Error { return nil }

func (m adapterMethods) StartDiscovery() *dbus.Error {
	m.f.mu.Lock()
	m.f.discovering = true
	m.f.discoveries++
	found := m.f.unseen
	m.f.unseen = nil
	m.f.mu.Unlock()
	for _, publish := range found {
		publish()
	}
	return nil
}

func (m adapterMethods) StopDiscovery() *dbus.Error {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	m.f.discovering = false
	return nil
}

func (f *fakeBlueZ) discovery() (discovering bool, discoveries int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.discovering, f.discoveries
}

type objectManager struct{ f *fakeBlueZ }

func (m objectManager) GetManagedObjects() (map[dbus.ObjectPath]map[string]map[string]dbus.Variant, *dbus.Error) {
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	out := map[dbus.ObjectPath]map[string]map[string]dbus.Variant{}
	for path, ifaces := range m.f.objects {
		out[path] = map[string]map[string]dbus.Variant{}
		for iface, p := range ifaces {
			out[path][iface], _ = p.GetAll(iface)
		}
	}
	return out, nil
}

// fakeService and fakeChar describe a GATT service to serve.
type fakeService struct {
	uuid  string
	chars []fakeChar
}

type fakeChar struct {
	uuid  string
	value []byte // what ReadValue returns
}

// fakeDevice is a peripheral. Connect succeeds unless failConnects > 0.
type fakeDevice struct {
	f     *fakeBlueZ
	path  dbus.ObjectPath
	props *prop.Properties

	mu           sync.Mutex
	failConnects int
	connects     int
	disconnects  int
	chars        map[string]*fakeCharObj // by UUID
}

type fakeCharObj struct {
	d         *fakeDevice
	path      dbus.ObjectPath
	props     *prop.Properties
	notifying bool
	starts    int
	value     []byte
	writes    [][]byte
}

// addDevice adds a device BlueZ knows, as if paired or seen lately.
func (f *fakeBlueZ) addDevice(addr string, services ...fakeService) *fakeDevice {
	f.tb.Helper()
	d := &fakeDevice{f: f, chars: map[string]*fakeCharObj{}}
	d.publish(addr, services)
	return d
}

// addUnseenDevice adds a device BlueZ has no object for until a scan.
func (f *fakeBlueZ) addUnseenDevice(addr string, services ...fakeService) *fakeDevice {
	d := &fakeDevice{f: f, chars: map[string]*fakeCharObj{}}
	f.mu.Lock()
	f.unseen = append(f.unseen, func() { d.publish(addr, services) })
	f.mu.Unlock()
	return d
}

func (d *fakeDevice) publish(addr string, services []fakeService) {
	f := d.f
	path := adapterPath + dbus.ObjectPath("/dev_"+strings.ReplaceAll(addr, ":", "_"))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.path = path
	var uuids []string
	for _, s := range services {
		uuids = append(uuids, s.uuid)
	}
	d.props = f.export(path, deviceIface, map[string]any{
		"Address":          addr,
		"AddressType":      "random",
		"Name":             "fake",
		"UUIDs":            uuids,
		"Connected":        false,
		"ServicesResolved": false,
	})
	if err := f.conn.Export(deviceMethods{d}, path, deviceIface); err != nil {
		f.tb.Fatal(err)
	}
	handle := 0x10
	for _, s := range services {
		spath := path + dbus.ObjectPath(fmt.Sprintf("/service%04x", handle))
		f.export(spath, "org.bluez.GattService1", map[string]any{"UUID": s.uuid, "Primary": true, "Device": path})
		handle++
		for _, c := range s.chars {
			cpath := spath + dbus.ObjectPath(fmt.Sprintf("/char%04x", handle))
			handle += 2
			obj := &fakeCharObj{d: d, path: cpath, value: c.value}
			obj.props = f.export(cpath, charIface, map[string]any{
				"UUID": c.uuid, "Service": spath, "Notifying": false,
				"Flags": []string{"read", "write", "notify"}, "Value": []byte{},
			})
			if err := f.conn.Export(charMethods{obj}, cpath, charIface); err != nil {
				f.tb.Fatal(err)
			}
			d.chars[c.uuid] = obj
		}
	}
}

type deviceMethods struct{ d *fakeDevice }

func (m deviceMethods) Connect() *dbus.Error {
	d := m.d
	d.mu.Lock()
	d.connects++
	fail := d.failConnects > 0
	if fail {
		d.failConnects--
	}
	d.mu.Unlock()
	if fail {
		return dbus.NewError("org.bluez.Error.Failed", []any{"le-connection-abort-by-local"})
	}
	d.set("Connected", true)
	d.set("ServicesResolved", true)
	return nil
}

// set changes a device property and signals it. A call that races the
// end of its test finds the fake's connection closed: nobody listens any
// more, so that is not an error (it used to panic about 1 run in 50).
func (d *fakeDevice) set(name string, v any) {
	defer func() {
		if r := recover(); r != nil {
			if err, ok := r.(error); !ok || !errors.Is(err, dbus.ErrClosed) {
				panic(r)
			}
		}
	}()
	d.props.SetMust(deviceIface, name, v)
}

func (m deviceMethods) Disconnect() *dbus.Error {
	d := m.d
	d.mu.Lock()
	d.disconnects++
	for _, c := range d.chars {
		c.notifying = false
	}
	d.mu.Unlock()
	d.set("ServicesResolved", false)
	d.set("Connected", false)
	return nil
}

type charMethods struct{ c *fakeCharObj }

func (m charMethods) StartNotify() *dbus.Error {
	m.c.d.mu.Lock()
	defer m.c.d.mu.Unlock()
	m.c.notifying = true
	m.c.starts++
	return nil
}

func (m charMethods) StopNotify() *dbus.Error {
	m.c.d.mu.Lock()
	defer m.c.d.mu.Unlock()
	m.c.notifying = false
	return nil
}

func (m charMethods) ReadValue(map[string]dbus.Variant) ([]byte, *dbus.Error) {
	m.c.d.mu.Lock()
	defer m.c.d.mu.Unlock()
	return m.c.value, nil
}

func (m charMethods) WriteValue(v []byte, _ map[string]dbus.Variant) *dbus.Error {
	m.c.d.mu.Lock()
	defer m.c.d.mu.Unlock()
	m.c.value = v
	m.c.writes = append(m.c.writes, v)
	return nil
}

// notify sends value as a notification of characteristic uuid, the way BlueZ
// does: a PropertiesChanged signal of its Value. It reports whether the
// central had notifications on.
func (d *fakeDevice) notify(uuid string, value []byte) bool {
	d.f.tb.Helper()
	d.mu.Lock()
	c := d.chars[uuid]
	on := c != nil && c.notifying
	d.mu.Unlock()
	if !on {
		return false
	}
	err := d.f.conn.Emit(c.path, "org.freedesktop.DBus.Properties.PropertiesChanged",
		charIface, map[string]dbus.Variant{"Value": dbus.MakeVariant(value)}, []string{})
	if err != nil {
		d.f.tb.Fatal(err)
	}
	return true
}

// waitNotifying waits until the central has turned notifications of uuid on
// for the n-th time.
func (d *fakeDevice) waitNotifying(uuid string, n int) {
	d.f.tb.Helper()
	poll.Until(d.f.tb, 10*time.Second, fmt.Sprintf("notifications of %s on for the %d. time", uuid, n), func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		c := d.chars[uuid]
		return c != nil && c.notifying && c.starts >= n
	})
}

func (d *fakeDevice) counts() (connects, disconnects int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connects, d.disconnects
}

func (d *fakeDevice) writes(uuid string) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.chars[uuid].writes
}
