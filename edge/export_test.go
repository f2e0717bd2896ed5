package edge

// LinkRepeats is how many failed link attempts repeated the problem last
// logged (tests poll it instead of sleeping).
func (a *Agent) LinkRepeats() int {
	a.link.mu.Lock()
	defer a.link.mu.Unlock()
	return a.link.repeats
}
