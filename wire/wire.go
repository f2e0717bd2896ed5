// Package wire is what Tideline's processes say to each other over NATS:
// the events stream and its subjects, the device lanes' subjects, the
// Tl-* headers, the tideline.es.v1.Commit envelope and the Direct Get
// requests that read it back, and their replies (ReadDirectGet). The event store (adapters/jetstream), the
// device gate (adapters/devicegate), the device registry
// (adapters/natsserver) and the edge agent's forwarder (edge/) all use it,
// so a name changed here changes for each of them.
//
// It imports the standard library, protobuf, schemas/gen, the pure
// domain/ packages and nats.go only (.ci/depcheck), so that both edge/ and
// adapters/ may import it.
package wire

import (
	"strings"

	"github.com/tideline/tideline/domain/safety"
)

// EventsStream is the events stream's default name (adapters/jetstream
// Config.Stream); EventsSubjects are its subjects,
// ev.<context>.<aggregate-type>.<id> (es.StreamID).
const (
	EventsStream   = "EVENTS"
	EventsSubjects = "ev.>"
)

// Device lanes. A device never writes a stream: it sends each commit as a
// request to its own subject, in.<lane>.device.<id>, and asks where the
// hub stands on <that>.last; the device gate admits a commit into
// EventsSubject or keeps it on QuarantineSubject, and answers only on the
// device's inbox, DeviceInboxPrefix.

// Lanes lists the device lanes.
var Lanes = []safety.DeviceLane{safety.LaneDanger, safety.LaneTelemetry}

// CommitSubject is where device id sends lane's commits.
func CommitSubject(lane safety.DeviceLane, id string) string {
	return "in." + string(lane) + ".device." + id
}

// LastSubject is where device id asks where the hub stands for lane.
func LastSubject(lane safety.DeviceLane, id string) string { return CommitSubject(lane, id) + ".last" }

// DeviceSubjects are all the subjects device id may publish on at the hub:
// each lane's CommitSubject and LastSubject.
func DeviceSubjects(id string) []string {
	s := make([]string, 0, 2*len(Lanes))
	for _, lane := range Lanes {
		s = append(s, CommitSubject(lane, id), LastSubject(lane, id))
	}
	return s
}

// ParseDeviceRequest reads a subject of DeviceSubjects: its lane and
// device id, and whether it is a LastSubject. ok is false for any other
// subject, an unknown lane included.
func ParseDeviceRequest(subject string) (lane safety.DeviceLane, id string, last, ok bool) {
	rest, found := strings.CutPrefix(subject, "in.")
	if !found {
		return "", "", false, false
	}
	p := strings.Split(rest, ".")
	switch {
	case len(p) == 3 && p[1] == "device":
	case len(p) == 4 && p[1] == "device" && p[3] == "last":
		last = true
	default:
		return "", "", false, false
	}
	lane, id = safety.DeviceLane(p[0]), p[2]
	if lane.EventType() == "" || id == "" {
		return "", "", false, false
	}
	return lane, id, last, true
}

// EventsSubject is where the gate appends lane's admitted commits of
// device id in the events stream.
func EventsSubject(lane safety.DeviceLane, id string) string {
	if lane == safety.LaneDanger {
		return "ev.safety.device." + id
	}
	return "ev." + string(lane) + ".device." + id
}

// QuarantineStream is the default stream of refused device commits.
const QuarantineStream = "DEVICE_QUARANTINE"

// QuarantineSubject is where lane's refused commits of device id are kept.
func QuarantineSubject(lane safety.DeviceLane, id string) string {
	return "quarantine." + string(lane) + ".device." + id
}

// DeviceInboxPrefix is the only inbox device id may receive replies on at
// the hub (its nats.CustomInboxPrefix); the gate answers only on
// DeviceInboxPrefix(id) + ".".
func DeviceInboxPrefix(id string) string { return "_INBOX_" + id }
