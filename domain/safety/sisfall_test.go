package safety_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/safety"
)

// The SisFall development split is read at test time from beside the
// checkout; none of it is in the repository (its README forbids copying).
// A. Sucerquia, J. D. López, J. F. Vargas-Bonilla, "SisFall: A Fall and
// Movement Dataset", Sensors 17(1):198, 2017, doi:10.3390/s17010198.
const sisfallArchive = "../shared/data/sisfall-dev/sisfall-dev.tar.gz"

// trial is one SisFall recording: rows of ax, ay, az (g), gx, gy, gz (°/s)
// at 100 Hz.
type trial struct {
	file, code, subject string
	fall                bool
	rows                [][6]float32
}

// samples returns the trial as detector samples from a fixed instant.
func (tr *trial) sample(i int) safety.Sample {
	r := &tr.rows[i]
	return safety.Sample{
		T:     sisfallStart.Add(time.Duration(i) * 10 * time.Millisecond),
		Accel: [3]float64{float64(r[0]), float64(r[1]), float64(r[2])},
		Gyro:  [3]float64{float64(r[3]), float64(r[4]), float64(r[5])},
	}
}

// impact is the index of the trial's largest |a|, the scoring rule's impact.
func (tr *trial) impact() int {
	best, at := -1.0, 0
	for i, r := range tr.rows {
		if m := float64(r[0])*float64(r[0]) + float64(r[1])*float64(r[1]) + float64(r[2])*float64(r[2]); m > best {
			best, at = m, i
		}
	}
	return at
}

var sisfallStart = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

var (
	sisfallOnce   sync.Once
	sisfallTrials []*trial
	sisfallErr    error
)

// sisfall decodes the archive once per test process, or skips the test
// saying where the archive should be.
func sisfall(tb testing.TB) []*trial {
	tb.Helper()
	root, err := moduleRoot()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(root, sisfallArchive)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		tb.Skipf("SisFall development split absent: %s not found (it lives beside the checkout, never in it)", path)
	}
	sisfallOnce.Do(func() { sisfallTrials, sisfallErr = readSisFall(path) })
	if sisfallErr != nil {
		tb.Fatal(sisfallErr)
	}
	return sisfallTrials
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// gunzip reads the gzip file at path through the gzip command if there is
// one: under the race detector (CI's test command) Go's own inflate takes
// 3-4 s of the archive's reading; the command takes a fraction of that.
// done ends it; the reader's EOF is an error if the command failed.
func gunzip(path string) (r io.Reader, done func(), err error) {
	if gz, err := exec.LookPath("gzip"); err == nil {
		c := &gzipCmd{cmd: exec.Command(gz, "-dc", path)}
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			return nil, nil, err
		}
		c.cmd.Stderr = &c.stderr
		if err := c.cmd.Start(); err != nil {
			return nil, nil, err
		}
		c.r = bufio.NewReaderSize(out, 1<<20)
		return c, c.done, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return zr, func() { f.Close() }, nil
}

type gzipCmd struct {
	cmd    *exec.Cmd
	r      io.Reader
	stderr bytes.Buffer
	waited bool
	err    error
}

func (c *gzipCmd) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		if c.wait(); c.err != nil {
			return n, fmt.Errorf("gzip: %w: %s", c.err, strings.TrimSpace(c.stderr.String()))
		}
	}
	return n, err
}

func (c *gzipCmd) wait() {
	if !c.waited {
		c.waited, c.err = true, c.cmd.Wait()
	}
}

func (c *gzipCmd) done() {
	if !c.waited {
		_ = c.cmd.Process.Kill()
		c.wait()
	}
}

func readSisFall(path string) ([]*trial, error) {
	zr, done, err := gunzip(path)
	if err != nil {
		return nil, fmt.Errorf("sisfall archive: %w", err)
	}
	defer done()
	tr := tar.NewReader(zr)
	byFile := map[string]*trial{}
	var manifest []byte
	var buf bytes.Buffer
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("sisfall archive: %w", err)
		}
		name := filepath.Base(h.Name)
		if !strings.HasSuffix(name, ".csv") {
			continue
		}
		buf.Reset()
		if _, err := io.Copy(&buf, tr); err != nil {
			return nil, fmt.Errorf("sisfall %s: %w", name, err)
		}
		if name == "manifest.csv" {
			manifest = bytes.Clone(buf.Bytes())
			continue
		}
		rows, err := parseTrial(buf.Bytes())
		if err != nil {
			return nil, fmt.Errorf("sisfall %s: %w", name, err)
		}
		byFile[name] = &trial{file: name, rows: rows}
	}
	var out []*trial
	for i, line := range strings.Split(strings.TrimSpace(string(manifest)), "\n") {
		if i == 0 {
			continue
		}
		// file,code,class,"activity",subject,group,trial,seconds: the
		// quoted activity may hold commas, so read the ends.
		fields := strings.Split(line, ",")
		n := len(fields)
		if n < 8 {
			return nil, fmt.Errorf("sisfall manifest line %d: %q", i+1, line)
		}
		t := byFile[fields[0]]
		if t == nil {
			return nil, fmt.Errorf("sisfall manifest names %s, not in the archive", fields[0])
		}
		t.code, t.subject, t.fall = fields[1], fields[n-4], fields[2] == "fall"
		out = append(out, t)
	}
	if len(out) != len(byFile) {
		return nil, fmt.Errorf("sisfall: manifest lists %d trials, archive holds %d", len(out), len(byFile))
	}
	return out, nil
}

// parseTrial reads "t,ax,ay,az,gx,gy,gz" rows after # comments and the
// header.
func parseTrial(b []byte) ([][6]float32, error) {
	rows := make([][6]float32, 0, len(b)/40)
	header := false
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if !header {
			header = true
			continue
		}
		var r [6]float32
		for col := range 7 {
			field := line
			if i := bytes.IndexByte(line, ','); i >= 0 {
				field, line = line[:i], line[i+1:]
			} else {
				line = nil
			}
			v, ok := parseDecimal(field)
			if !ok {
				return nil, fmt.Errorf("row %d: bad number %q", len(rows)+1, field)
			}
			if col > 0 {
				r[col-1] = float32(v)
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// parseDecimal reads [-]digits[.digits] exactly as strconv.ParseFloat does
// (an integer mantissa divided by an exact power of ten rounds correctly).
func parseDecimal(b []byte) (float64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg || len(b) > 0 && b[0] == '+' {
		b = b[1:]
	}
	var m int64
	frac, dot, digits := 0, false, 0
	for _, c := range b {
		switch {
		case c == '.' && !dot:
			dot = true
		case c >= '0' && c <= '9':
			m = m*10 + int64(c-'0')
			digits++
			if dot {
				frac++
			}
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 {
		return 0, false
	}
	v := float64(m) / math.Pow10(frac)
	if neg {
		v = -v
	}
	return v, true
}

// verdict is one trial's outcome as the acceptance check scores it.
type verdict struct {
	// hit: a fall with a danger decided at or after 3 s before its
	// impact (the largest |a|).
	hit bool
	// alarms counts every danger decided in the trial.
	alarms int
	// after is when the first danger that counts for a fall was decided,
	// from the impact; known only when hasAfter.
	after    time.Duration
	hasAfter bool
}

// devReport tallies trials the way the acceptance check scores them.
type devReport struct {
	codes, subjects              map[string]*codeTally
	falls, detected, adls, quiet int
	adlAlarms                    int
	adlSeconds                   float64
	after                        []time.Duration
}

// codeTally counts trials of one activity code or subject: for falls,
// detected ones; for daily activities, quiet ones.
type codeTally struct {
	n, ok, alarms      int
	falls, fallsOK     int
	dailies, dailiesOK int
}

// tallyTrials judges every trial, two at a time.
func tallyTrials(trials []*trial, judge func(tr *trial) verdict) *devReport {
	r := &devReport{codes: map[string]*codeTally{}, subjects: map[string]*codeTally{}}
	vs := make([]verdict, len(trials))
	parallel(len(trials), func(i int) { vs[i] = judge(trials[i]) })
	get := func(m map[string]*codeTally, k string) *codeTally {
		if m[k] == nil {
			m[k] = &codeTally{}
		}
		return m[k]
	}
	for i, tr := range trials {
		v := vs[i]
		c, sub := get(r.codes, tr.code), get(r.subjects, tr.subject)
		c.n++
		c.alarms += v.alarms
		if tr.fall {
			r.falls++
			sub.falls++
			if v.hit {
				r.detected++
				c.ok++
				sub.fallsOK++
			}
			if v.hasAfter {
				r.after = append(r.after, v.after)
			}
			continue
		}
		r.adls++
		sub.dailies++
		r.adlSeconds += float64(len(tr.rows)) / 100
		r.adlAlarms += v.alarms
		if v.alarms == 0 {
			r.quiet++
			c.ok++
			sub.dailiesOK++
		}
	}
	slices.Sort(r.after)
	return r
}

func (r *devReport) sensitivity() float64 { return float64(r.detected) / float64(r.falls) }
func (r *devReport) specificity() float64 { return float64(r.quiet) / float64(r.adls) }
func (r *devReport) alarmsPerHour() float64 {
	return float64(r.adlAlarms) / (r.adlSeconds / 3600)
}

// String prints the figures, the confusion by activity code (for a fall
// code, detected and missed trials; for a daily activity, quiet trials
// and trials with a false alarm; and every danger decided), then by
// subject.
func (r *devReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "falls: sensitivity %.4f (%d/%d)\n", r.sensitivity(), r.detected, r.falls)
	fmt.Fprintf(&b, "daily activities: specificity %.4f (%d/%d), %d false alarms in %.2f h = %.2f per hour\n",
		r.specificity(), r.quiet, r.adls, r.adlAlarms, r.adlSeconds/3600, r.alarmsPerHour())
	if n := len(r.after); n > 0 {
		fmt.Fprintf(&b, "first counting danger after the impact: min %v, median %v, 99th percentile %v, max %v\n",
			r.after[0], r.after[n/2], r.after[n*99/100], r.after[n-1])
	}
	fmt.Fprintf(&b, "%-4s %6s %8s %6s %7s\n", "code", "trials", "correct", "wrong", "dangers")
	for _, code := range slices.Sorted(maps.Keys(r.codes)) {
		c := r.codes[code]
		what := "sensitivity"
		if code[0] == 'D' {
			what = "specificity"
		}
		fmt.Fprintf(&b, "%-4s %6d %8d %6d %7d  %s %.3f\n", code, c.n, c.ok, c.n-c.ok, c.alarms, what, float64(c.ok)/float64(c.n))
	}
	fmt.Fprintf(&b, "%-7s %16s %17s\n", "subject", "falls detected", "activities quiet")
	for _, sub := range slices.Sorted(maps.Keys(r.subjects)) {
		c := r.subjects[sub]
		fall := "-"
		if c.falls > 0 {
			fall = fmt.Sprintf("%d/%d", c.fallsOK, c.falls)
		}
		fmt.Fprintf(&b, "%-7s %16s %17s\n", sub, fall, fmt.Sprintf("%d/%d", c.dailiesOK, c.dailies))
	}
	return b.String()
}

// judgeDetector runs a fresh detector with cfg over the trial, every
// sample pushed, every detection counted, as the acceptance check does.
func judgeDetector(cfg safety.Config) func(tr *trial) verdict {
	return func(tr *trial) verdict {
		d := safety.NewDetector(cfg)
		impact := sisfallStart.Add(time.Duration(tr.impact()) * 10 * time.Millisecond)
		from := impact.Add(-3 * time.Second)
		var v verdict
		for i := range tr.rows {
			det, ok := d.Push(tr.sample(i))
			if !ok {
				continue
			}
			v.alarms++
			if tr.fall && !det.At.Before(from) && !v.hit {
				v.hit, v.after, v.hasAfter = true, det.At.Sub(impact), true
			}
		}
		return v
	}
}

// TestSisFallDevSplit scores the shipped DefaultConfig (the body profile)
// on every trial of the SisFall development split exactly as the
// acceptance check does (README of the split): a fresh detector per
// trial, every sample pushed, every detection counted. The model was
// trained on these subjects, so this is an in-sample figure; the estimate
// for unseen people is TestFallModel's cross-validation. The floors sit
// just under what the shipped model reaches, so any change that loses a
// fall or adds a false alarm here fails. The bike profile's figures are
// logged beside it: its thresholds are what the body profile replaced.
func TestSisFallDevSplit(t *testing.T) {
	trials := sisfall(t)
	body := tallyTrials(trials, judgeDetector(safety.DefaultConfig()))
	t.Log("SisFall dev split, DefaultConfig (body profile), in-sample:\n" + body.String())
	bike := tallyTrials(trials, judgeDetector(safety.BikeConfig()))
	t.Logf("the bike profile on the same trials (not meant for a body): sensitivity %.4f, specificity %.4f, %.1f false alarms per hour",
		bike.sensitivity(), bike.specificity(), bike.alarmsPerHour())
	if body.sensitivity() < 0.995 || body.specificity() < 0.995 {
		t.Errorf("body profile: sensitivity %.4f, specificity %.4f; want at least 0.995 and 0.995", body.sensitivity(), body.specificity())
	}
}

// BenchmarkSisFallDevSplit runs DefaultConfig over the whole development
// split per iteration (two trials at a time) and reports the acceptance
// figures beside the throughput; the full table is logged once.
//
//	go test ./domain/safety/ -run '^$' -bench SisFall -benchtime 3x
func BenchmarkSisFallDevSplit(b *testing.B) {
	trials := sisfall(b)
	samples := 0
	for _, tr := range trials {
		samples += len(tr.rows)
	}
	var r *devReport
	n := 0
	for b.Loop() {
		r = tallyTrials(trials, judgeDetector(safety.DefaultConfig()))
		n += samples
	}
	b.ReportMetric(r.sensitivity(), "sensitivity")
	b.ReportMetric(r.specificity(), "specificity")
	b.ReportMetric(r.alarmsPerHour(), "false-alarms/h")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
	b.Log("SisFall dev split, DefaultConfig (body profile), in-sample:\n" + r.String())
}
