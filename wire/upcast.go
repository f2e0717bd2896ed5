package wire

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tideline/tideline/domain/safety"
)

// Events are facts that live forever, so their schemas only grow (STYLE
// rule 10). A change an old reader could not take (a new required field,
// a split) is a new message, and an upcaster turns the old message into
// the new one on read: DecodeCommit applies them, so the store's Load,
// the projection runners, the reactions and exports see only current
// shapes, and writers append only the current one.

// An Upcaster turns an event of an old type into the next version. It is
// a pure function of old (no clock, no I/O), must not modify old, and
// returns an error only for a message no version of Tideline wrote.
type Upcaster func(old proto.Message) (proto.Message, error)

// Upcasters is a registry of upcasters by the type they read. Upcasters
// chain: a type's upcaster may yield a type that has one in turn
// (v1 -> v2 -> v3). Register everything before the first Upcast:
// Register is not safe for concurrent use, Upcast and Sources are.
type Upcasters struct {
	m map[protoreflect.FullName]upcaster
}

type upcaster struct {
	to protoreflect.FullName
	up Upcaster
}

// Register makes up the upcaster of events of type from, into type to.
// It panics (a programming error) when from already has an upcaster, when
// from and to are the same, or when the chain from to leads back to from.
func (u *Upcasters) Register(from, to protoreflect.FullName, up Upcaster) {
	if _, dup := u.m[from]; dup {
		panic(fmt.Sprintf("wire: second upcaster for %s", from))
	}
	for t := to; ; {
		if t == from {
			panic(fmt.Sprintf("wire: upcasters of %s make a cycle", from))
		}
		next, ok := u.m[t]
		if !ok {
			break
		}
		t = next.to
	}
	if u.m == nil {
		u.m = map[protoreflect.FullName]upcaster{}
	}
	u.m[from] = upcaster{to: to, up: up}
}

// Upcast returns m in its current shape: m itself when its type has no
// upcaster (a map lookup), else what the chain of upcasters makes of it.
// An error names the type whose upcaster failed, or returned a message of
// another type than it was registered for.
func (u *Upcasters) Upcast(m proto.Message) (proto.Message, error) {
	name := m.ProtoReflect().Descriptor().FullName()
	for {
		c, ok := u.m[name]
		if !ok {
			return m, nil
		}
		next, err := c.up(m)
		if err != nil {
			return nil, fmt.Errorf("upcast %s to %s: %w", name, c.to, err)
		}
		if next == nil || next.ProtoReflect().Descriptor().FullName() != c.to {
			return nil, fmt.Errorf("upcast %s: the upcaster returned %T, not a %s", name, next, c.to)
		}
		m, name = next, c.to
	}
}

// Sources returns the names of the types that upcast, directly or through
// a chain, into the type named current: the older names of its events,
// as they stand in stored commits' event-types headers.
func (u *Upcasters) Sources(current string) []string {
	var out []string
	for from := range u.m {
		for t := from; ; {
			c, ok := u.m[t]
			if !ok {
				break
			}
			if t = c.to; string(t) == current {
				out = append(out, string(from))
				break
			}
		}
	}
	return out
}

// upcasters are the ones DecodeCommit applies: every context's, in one
// list. Add a line here with each new version of an event; the upcaster
// itself lives beside the context's events, where its rules are tested.
var upcasters = func() *Upcasters {
	u := &Upcasters{}
	u.Register("tideline.safety.v1.AlertRaised", "tideline.safety.v1.AlertRaisedV2", safety.UpcastAlertRaised)
	return u
}()

// Superseded returns the type that events of the type named old are
// upcast into, and whether there is one. Writers append only current
// types (the event store refuses others).
func Superseded(old string) (next string, ok bool) {
	c, ok := upcasters.m[protoreflect.FullName(old)]
	return string(c.to), ok
}

// OlderTypes returns the names of the event types DecodeCommit upcasts
// into the type named current (Upcasters.Sources): a reader that selects
// commits by their event-types header must select these too.
func OlderTypes(current string) []string { return upcasters.Sources(current) }
