package alerts

import (
	"cmp"
	"slices"

	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// listing is the alerts in List's order, all and by rider, and the open
// ones (not acknowledged) the same way. Each list is ascending: List
// reads it from the end, newest first.
type listing struct {
	all, open            keyList
	byRider, openByRider map[string]*keyList
}

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

func compareKeys(a, b listKey) int {
	return cmp.Or(cmp.Compare(a.sec, b.sec), cmp.Compare(a.nsec, b.nsec), cmp.Compare(a.id, b.id))
}

func newListing() listing {
	return listing{byRider: map[string]*keyList{}, openByRider: map[string]*keyList{}}
}

// add lists a raised alert; open says it is not acknowledged.
func (l *listing) add(a *safetyv1.Alert) {
	k, rider := keyOfAlert(a.RaisedV2), a.RaisedV2.RiderId
	l.all.insert(k)
	riderList(l.byRider, rider).insert(k)
	if a.Acknowledged == nil {
		l.open.insert(k)
		riderList(l.openByRider, rider).insert(k)
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
	k := keyOfAlert(a)
	l.open.remove(k)
	if rest := l.openByRider[a.RiderId]; rest != nil {
		if rest.remove(k); rest.len() == 0 {
			delete(l.openByRider, a.RiderId)
		}
	}
}

// keyList is an ascending list of keys in parts of at most maxListPart,
// so that an insert or a removal moves at most one part's keys, and the
// list grows a part at a time: it never copies itself whole, as a slice
// does when it outgrows its array (with 443,392 alerts listed that took
// one Apply 75–246 ms).
type keyList struct {
	parts [][]listKey // each ascending and not empty, in order
	n     int
}

const maxListPart = 512

// len returns how many keys l holds; 0 for a nil list.
func (l *keyList) len() int {
	if l == nil {
		return 0
	}
	return l.n
}

// find returns the part and place where k is or belongs, and whether it
// is there.
func (l *keyList) find(k listKey) (pi, i int, found bool) {
	pi, _ = slices.BinarySearchFunc(l.parts, k, func(p []listKey, k listKey) int { return compareKeys(p[len(p)-1], k) })
	if pi == len(l.parts) { // after every key: the last part's end
		if pi == 0 {
			return 0, 0, false
		}
		pi--
		return pi, len(l.parts[pi]), false
	}
	i, found = slices.BinarySearchFunc(l.parts[pi], k, compareKeys)
	return pi, i, found
}

// insert adds k, which l does not hold. Alerts are mostly raised in
// order, so this is usually an append to the last part; a full last part
// appended to stays full, and the key starts a new one.
func (l *keyList) insert(k listKey) {
	l.n++
	pi, i, _ := l.find(k)
	if len(l.parts) == 0 || pi == len(l.parts)-1 && i == maxListPart {
		l.parts = append(l.parts, append(make([]listKey, 0, 8), k))
		return
	}
	p := slices.Insert(l.parts[pi], i, k)
	if len(p) <= maxListPart {
		l.parts[pi] = p
		return
	}
	half := len(p) / 2
	hi := slices.Clone(p[half:])
	l.parts[pi] = slices.Clip(p[:half])
	l.parts = slices.Insert(l.parts, pi+1, hi)
}

// remove takes k out, if l holds it.
func (l *keyList) remove(k listKey) {
	pi, i, found := l.find(k)
	if !found {
		return
	}
	l.n--
	if p := slices.Delete(l.parts[pi], i, i+1); len(p) > 0 {
		l.parts[pi] = p
		return
	}
	l.parts = slices.Delete(l.parts, pi, pi+1)
}

// newest visits up to limit keys, the last first; l may be nil.
func (l *keyList) newest(limit int, visit func(listKey)) {
	if l == nil {
		return
	}
	for pi := len(l.parts) - 1; pi >= 0; pi-- {
		p := l.parts[pi]
		for i := len(p) - 1; i >= 0; i-- {
			if limit <= 0 {
				return
			}
			visit(p[i])
			limit--
		}
	}
}
