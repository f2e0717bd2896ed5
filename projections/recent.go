package projections

// Recent keeps, for each owner, their newest entries by key, at most Max
// an owner (the oldest go first), in the order they were added: the
// shape of "each user's latest stories / lectures" lists. Not safe for
// concurrent use: its model guards it.
type Recent[T any] struct {
	Max     int
	byOwner map[string][]string // keys, oldest first
	byKey   map[string]*T
}

// NewRecent returns an empty Recent keeping max entries an owner.
func NewRecent[T any](max int) *Recent[T] {
	return &Recent[T]{Max: max, byOwner: map[string][]string{}, byKey: map[string]*T{}}
}

// Add adds v as owner's newest entry under key, unless key is there
// already; it reports whether it added.
func (r *Recent[T]) Add(owner, key string, v T) bool {
	if _, ok := r.byKey[key]; ok {
		return false
	}
	keys := append(r.byOwner[owner], key)
	if len(keys) > r.Max {
		delete(r.byKey, keys[0])
		keys = keys[1:]
	}
	r.byOwner[owner] = keys
	r.byKey[key] = &v
	return true
}

// Get returns the entry of key to read or update; nil when it is not
// kept.
func (r *Recent[T]) Get(key string) *T { return r.byKey[key] }

// Newest returns owner's newest entries, newest first, at most limit,
// and how many are kept for them.
func (r *Recent[T]) Newest(owner string, limit int) ([]T, int) {
	keys := r.byOwner[owner]
	out := make([]T, 0, min(limit, len(keys)))
	for i := len(keys) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, *r.byKey[keys[i]])
	}
	return out, len(keys)
}

// Len is how many entries are kept.
func (r *Recent[T]) Len() int { return len(r.byKey) }

// Each calls f with every entry, each owner's oldest first.
func (r *Recent[T]) Each(f func(owner, key string, v T)) {
	for owner, keys := range r.byOwner {
		for _, k := range keys {
			f(owner, k, *r.byKey[k])
		}
	}
}
