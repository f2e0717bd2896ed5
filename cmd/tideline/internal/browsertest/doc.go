// Package browsertest drives the web console (api/web) in a real headless
// Chromium against a real server: its tests sign up, log in, watch the
// dashboard change live under a demo load, acknowledge an alert, turn on
// two-factor log-in, and save screenshots of every page at desktop and
// phone width under $TIDELINE_ARTIFACTS (default: a folder in the system
// temp dir). They need Debian's chromium; with CI set, its absence fails
// them, else they skip.
package browsertest
