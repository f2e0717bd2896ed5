package alerts

import (
	"cmp"

	"github.com/tideline/tideline/projections"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// listing is the alerts in List's order, all and by rider, and the open
// ones (not acknowledged) the same way. Each list is ascending: List
// reads it from the end, newest first.
type listing struct {
	all, open            keyList
	byRider, openByRider map[string]*keyList
}

// keyList is a list of keys in parts: it grows and changes a part at a
// time (projections.Sorted).
type keyList = projections.Sorted[listKey]

// listKey orders alerts as List returns them, reversed: raised_at, then
// alert id.
type listKey struct {
	sec  int64 // raised_at
	nsec int
	id   string
}

func keyOfAlert(a *safetyv1.AlertRaisedV2) listKey {
	t := a.RaisedAt.AsTime()
	return listKey{t.Unix(), t.Nanosecond(), a.AlertId}
}

// from compares e to k, as the lists look k up.
func (k listKey) from(e listKey) int {
	return cmp.Or(cmp.Compare(e.sec, k.sec), cmp.Compare(e.nsec, k.nsec), cmp.Compare(e.id, k.id))
}

func newListing() listing {
	return listing{byRider: map[string]*keyList{}, openByRider: map[string]*keyList{}}
}

// add lists a raised alert; open says it is not acknowledged.
func (l *listing) add(a *safetyv1.Alert) {
	k, rider := keyOfAlert(a.RaisedV2), a.RaisedV2.RiderId
	to := k.from
	l.all.Insert(k, to)
	riderList(l.byRider, rider).Insert(k, to)
	if a.Acknowledged == nil {
		l.open.Insert(k, to)
		riderList(l.openByRider, rider).Insert(k, to)
	}
}

func riderList(lists map[string]*keyList, rider string) *keyList {
	l := lists[rider]
	if l == nil {
		l = &keyList{}
		lists[rider] = l
	}
	return l
}

// acknowledged takes a listed alert off the open lists.
func (l *listing) acknowledged(a *safetyv1.AlertRaisedV2) {
	to := keyOfAlert(a).from
	l.open.Remove(to)
	if rest := l.openByRider[a.RiderId]; rest != nil {
		if rest.Remove(to); rest.Empty() {
			delete(l.openByRider, a.RiderId)
		}
	}
}
