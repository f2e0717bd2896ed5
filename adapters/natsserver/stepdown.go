package natsserver

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// StepDown hands every JetStream stream and consumer ns leads to another
// node of its cluster (a Raft step-down, what NATS's lame duck mode does)
// and waits, wait at most, until each has a new leader. A node that
// leaves on purpose so stalls no write for an election: without it,
// writes wait out their acknowledgement timeout on the leaving leader
// first. It returns how many groups it handed over and how many still had
// no other leader when it stopped waiting; a server alone hands over none.
func StepDown(ns *server.Server, wait time.Duration) (moved, pending int) {
	if ns == nil || !ns.JetStreamIsClustered() {
		return 0, 0
	}
	self := ns.Name()
	type group struct{ account, stream, consumer string }
	led := func() []group {
		info, err := ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
		if err != nil {
			return nil
		}
		var out []group
		for _, a := range info.AccountDetails {
			for _, st := range a.Streams {
				if st.Cluster != nil && st.Cluster.Leader == self {
					out = append(out, group{a.Name, st.Name, ""})
				}
				for _, c := range st.Consumer {
					if c != nil && c.Cluster != nil && c.Cluster.Leader == self {
						out = append(out, group{a.Name, st.Name, c.Name})
					}
				}
			}
		}
		return out
	}
	for _, g := range led() {
		var err error
		if g.consumer == "" {
			err = ns.JetStreamStepdownStream(g.account, g.stream)
		} else {
			err = ns.JetStreamStepdownConsumer(g.account, g.stream, g.consumer)
		}
		if err == nil {
			moved++
		}
	}
	if moved == 0 {
		return 0, 0
	}
	// A group that steps down has no leader until the others elect one
	// (about a second); one this node still leads then could not hand over.
	deadline := time.Now().Add(wait)
	for {
		pending = 0
		info, err := ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
		if err == nil {
			for _, a := range info.AccountDetails {
				for _, st := range a.Streams {
					if st.Cluster != nil && len(st.Cluster.Replicas) > 0 && (st.Cluster.Leader == "" || st.Cluster.Leader == self) {
						pending++
					}
				}
			}
		}
		if err == nil && pending == 0 || time.Now().After(deadline) {
			return moved, pending
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}
