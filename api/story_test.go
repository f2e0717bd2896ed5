package api_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/jetstream/jstest"
	smtpadapter "github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/adapters/smtp/smtptest"
	"github.com/tideline/tideline/adapters/tesseract/pagetest"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/internal/poll"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/accounts/v1/accountsv1connect"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/story/v1/storyv1connect"
)

var storyPage = []string{
	"The little fox ran across the snowy field.",
	"She found her mother waiting by the old oak tree.",
}

func needStoryEngines(t *testing.T) {
	t.Helper()
	mediatest.Need(t, "tesseract", "tesseract-ocr")
	mediatest.Need(t, "espeak-ng", "espeak-ng")
	mediatest.Need(t, "opusenc", "opus-tools")
}

// storyServer starts a server that mails through a test SMTP server.
func storyServer(t *testing.T) (*servertest.Server, *smtptest.Server) {
	t.Helper()
	mail := smtptest.Start(t, nil)
	f := start(t, func(m *server.Main) {
		m.Config.SMTP = smtpadapter.Config{Host: mail.Host, Port: mail.Port, TLS: smtpadapter.NoTLS,
			From: "Tideline <noreply@tideline.example>", Timeout: 5 * time.Second}
	})
	return f, mail
}

// upload PUTs img to a fresh upload URL and returns the upload's name.
func upload(t testing.TB, c storyv1connect.StoryServiceClient, tok string, img []byte) string {
	t.Helper()
	res, err := c.CreateUploads(context.Background(), withToken(&storyv1.CreateUploadsRequest{}, tok))
	if err != nil {
		t.Fatal(err)
	}
	u := res.Msg.Uploads[0]
	req, _ := http.NewRequest(http.MethodPut, u.Url, bytes.NewReader(img))
	req.Header.Set("Content-Type", "image/png")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT upload: %s", resp.Status)
	}
	return u.Name
}

func waitStory(t testing.TB, c storyv1connect.StoryServiceClient, tok, id string, done func(*storyv1.Story) bool) *storyv1.Story {
	t.Helper()
	var st *storyv1.Story
	poll.Until(t, 5*time.Minute, "story "+id+" to finish", func() bool {
		res, err := c.GetStory(context.Background(), withToken(&storyv1.GetStoryRequest{StoryId: id}, tok))
		if connect.CodeOf(err) == connect.CodeNotFound {
			return false // a batch's story exists once the fan-out reaction requested it
		}
		if err != nil {
			t.Fatal(err)
		}
		st = res.Msg.Story
		return done(st)
	})
	return st
}

func notified(s *storyv1.Story) bool { return s.NotifiedChannel != "" }

// A page goes through OCR (tesseract), speech (espeak-ng, Opus) and an
// e-mail with the audio's link, end to end through the real server.
func TestStorytimeEndToEnd(t *testing.T) {
	needStoryEngines(t)
	t.Parallel()
	f, mail := storyServer(t)
	c := storyv1connect.NewStoryServiceClient(h2c, f.URL)
	kim := f.Token(t, "kim", auth.Walker)
	ctx := context.Background()
	if _, err := c.SetNotifications(ctx, withToken(&storyv1.SetNotificationsRequest{Email: "kim@family.example"}, kim)); err != nil {
		t.Fatal(err)
	}
	page := pagetest.Render(t, storyPage, 28)
	name := upload(t, c, kim, page)
	req, err := c.RequestStory(ctx, withToken(&storyv1.RequestStoryRequest{UploadName: name, Langs: []string{"en"}}, kim))
	if err != nil {
		t.Fatal(err)
	}
	id := req.Msg.StoryId
	st := waitStory(t, c, kim, id, notified)
	if st.Stage != storyv1.Stage_STAGE_NOTIFIED || st.NotifiedChannel != "email" {
		t.Fatalf("story ended %v by %q: %s", st.Stage, st.NotifiedChannel, st.Failure)
	}
	want := strings.Join(storyPage, " ")
	if wer := mediatest.WordErrorRate(want, st.Text); wer > 0.1 {
		t.Errorf("text %q: word error rate %.2f against %q", st.Text, wer, want)
	}
	resp, err := http.Get(st.AudioUrl)
	if err != nil {
		t.Fatal(err)
	}
	audio, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "audio/ogg" || !bytes.HasPrefix(audio, []byte("OggS")) || st.AudioDurationMs < 1000 {
		t.Fatalf("audio: %s, %s, %d bytes, %d ms", resp.Status, resp.Header.Get("Content-Type"), len(audio), st.AudioDurationMs)
	}
	mails := mail.Received()
	if len(mails) != 1 || mails[0].To[0] != "kim@family.example" {
		t.Fatalf("mails: %+v", mails)
	}
	_, subject, text := smtptest.Read(t, mails[0].Data)
	if subject != "Your story is ready" || !strings.Contains(text, "/blobs/story/"+id+"-speech?") || !strings.Contains(text, "little fox") {
		t.Errorf("mail %q:\n%s", subject, text)
	}

	// The same page again is the same story, at once: nothing appended,
	// no engine run, no second mail.
	last := f.Last(t)
	again, err := c.RequestStory(ctx, withToken(&storyv1.RequestStoryRequest{UploadName: upload(t, c, kim, page)}, kim))
	if err != nil || !again.Msg.Duplicate || again.Msg.StoryId != id {
		t.Fatalf("same page again: %v, %v", again, err)
	}
	if f.Last(t) != last {
		t.Error("a duplicate request appended")
	}
	list, err := c.ListStories(ctx, withToken(&storyv1.ListStoriesRequest{MinPosition: last}, kim))
	if err != nil || list.Msg.Total != 1 || list.Msg.Stories[0].Stage != storyv1.Stage_STAGE_NOTIFIED {
		t.Fatalf("list: %v, %v", list, err)
	}

	// Nobody else sees it.
	lee := f.Token(t, "lee", auth.Walker)
	if _, err := c.GetStory(ctx, withToken(&storyv1.GetStoryRequest{StoryId: id}, lee)); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("another user's story: %v, want NotFound", err)
	}
	if len(mail.Received()) != 1 {
		t.Errorf("%d mails, want 1", len(mail.Received()))
	}
}

// Bad requests name their field and append nothing.
func TestStorytimeRefusals(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := storyv1connect.NewStoryServiceClient(h2c, f.URL)
	kim, lee := f.Token(t, "kim", auth.Walker), f.Token(t, "lee", auth.Walker)
	ctx := context.Background()
	created, err := c.CreateUploads(ctx, withToken(&storyv1.CreateUploadsRequest{Count: 2}, kim))
	if err != nil || len(created.Msg.Uploads) != 2 {
		t.Fatalf("CreateUploads: %v, %v", created, err)
	}
	kimsUpload := upload(t, c, kim, pagetest.Render(t, storyPage[:1], 28))
	last := f.Last(t)
	for _, tc := range []struct {
		name string
		tok  string
		call func(tok string) error
		code connect.Code
		want string
	}{
		{"not_uploaded_yet", kim, func(tok string) error {
			_, err := c.RequestStory(ctx, withToken(&storyv1.RequestStoryRequest{UploadName: created.Msg.Uploads[0].Name}, tok))
			return err
		}, connect.CodeFailedPrecondition, "upload_name"},
		{"another_users_upload", lee, func(tok string) error {
			_, err := c.RequestStory(ctx, withToken(&storyv1.RequestStoryRequest{UploadName: kimsUpload}, tok))
			return err
		}, connect.CodeInvalidArgument, "upload_name"},
		{"unknown_language", kim, func(tok string) error {
			_, err := c.RequestStory(ctx, withToken(&storyv1.RequestStoryRequest{UploadName: kimsUpload, Langs: []string{"en", "fr"}}, tok))
			return err
		}, connect.CodeInvalidArgument, "langs[1]"},
		{"too_many_uploads", kim, func(tok string) error {
			_, err := c.CreateUploads(ctx, withToken(&storyv1.CreateUploadsRequest{Count: 101}, tok))
			return err
		}, connect.CodeInvalidArgument, "count"},
		{"empty_batch", kim, func(tok string) error {
			_, err := c.RequestStories(ctx, withToken(&storyv1.RequestStoriesRequest{}, tok))
			return err
		}, connect.CodeInvalidArgument, "upload_names"},
		{"bad_email", kim, func(tok string) error {
			_, err := c.SetNotifications(ctx, withToken(&storyv1.SetNotificationsRequest{Email: "kim at home"}, tok))
			return err
		}, connect.CodeInvalidArgument, "email"},
		{"plain_http_webhook", kim, func(tok string) error {
			_, err := c.SetNotifications(ctx, withToken(&storyv1.SetNotificationsRequest{SlackWebhook: "http://127.0.0.1:22/x"}, tok))
			return err
		}, connect.CodeInvalidArgument, "slack_webhook"},
		{"devices_may_not", f.Token(t, "d1", auth.Device), func(tok string) error {
			_, err := c.CreateUploads(ctx, withToken(&storyv1.CreateUploadsRequest{}, tok))
			return err
		}, connect.CodePermissionDenied, ""},
		{"unknown_story", kim, func(tok string) error {
			_, err := c.GetStory(ctx, withToken(&storyv1.GetStoryRequest{StoryId: "snope"}, tok))
			return err
		}, connect.CodeNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(tc.tok)
			if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v naming %q", err, tc.code, tc.want)
			}
		})
	}
	if f.Last(t) != last {
		t.Error("refused requests appended")
	}
}

// TestStorytimeForgottenUser: a user with an account sets the address
// to be told at, then forgets themselves (ForgetUser deletes their
// personal data key, which sealed it): their story is recorded told by
// "forgotten" and nothing is mailed, while another user's story is; the
// address is in neither the event stream nor any answer, and it can no
// longer be set.
func TestStorytimeForgottenUser(t *testing.T) {
	mediatest.Need(t, "tesseract", "tesseract-ocr") // blank pages: OCR fails them, no speech
	t.Parallel()
	f, mail := storyServer(t)
	c := storyv1connect.NewStoryServiceClient(h2c, f.URL)
	ac := accountsv1connect.NewAccountServiceClient(h2c, f.URL)
	ctx := context.Background()
	signUp(t, ac, "choi@example.com")
	session := login(t, ac, "choi@example.com", "")
	choi := session.AccessToken
	lee := f.Token(t, "lee", auth.Walker) // no account: a key is made for the address
	for tok, email := range map[string]string{choi: "choi.story@family.example", lee: "lee.story@family.example"} {
		if _, err := c.SetNotifications(ctx, withToken(&storyv1.SetNotificationsRequest{Email: email}, tok)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ac.ForgetUser(ctx, withToken(&accountsv1.ForgetUserRequest{UserId: session.UserId}, choi)); err != nil {
		t.Fatalf("forget oneself: %v", err)
	}

	var answers bytes.Buffer // what GetStory and ListStories answered
	tell := func(tok string) *storyv1.Story {
		t.Helper()
		req, err := c.RequestStory(ctx, withToken(&storyv1.RequestStoryRequest{UploadName: upload(t, c, tok, blank())}, tok))
		if err != nil {
			t.Fatal(err)
		}
		st := waitStory(t, c, tok, req.Msg.StoryId, notified)
		list, err := c.ListStories(ctx, withToken(&storyv1.ListStoriesRequest{}, tok))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []proto.Message{st, list.Msg} {
			b, _ := protojson.Marshal(m)
			answers.Write(b)
		}
		return st
	}
	if st := tell(choi); st.Stage != storyv1.Stage_STAGE_FAILED || st.NotifiedChannel != "forgotten" {
		t.Errorf("forgotten choi's story: %v, told by %q", st.Stage, st.NotifiedChannel)
	}
	if st := tell(lee); st.NotifiedChannel != "email" {
		t.Errorf("lee's story told by %q", st.NotifiedChannel)
	}
	var to []string
	for _, m := range mail.Received() {
		to = append(to, m.To...)
	}
	if !slices.Equal(to, []string{"lee.story@family.example"}) {
		t.Errorf("mailed %v; want lee alone", to)
	}
	_, err := c.SetNotifications(ctx, withToken(&storyv1.SetNotificationsRequest{Email: "choi@family.example"}, choi))
	wantCode(t, err, connect.CodeFailedPrecondition, "a forgotten user setting an address")

	raw := jstest.RawStream(t, f.Store)
	for _, secret := range []string{"choi.story", "lee.story", "choi@"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("%q in the raw event stream", secret)
		}
		if bytes.Contains(answers.Bytes(), []byte(secret)) {
			t.Errorf("%q in an answer: %s", secret, answers.Bytes())
		}
	}
}

// blank is a white PNG: a page with no text.
func blank() []byte {
	img := image.NewGray(image.Rect(0, 0, 400, 200))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

// A bulk request of two pages, one of them blank, ends in one combined
// mail saying which page is ready and why the other failed.
func TestStorytimeBatch(t *testing.T) {
	needStoryEngines(t)
	t.Parallel()
	f, mail := storyServer(t)
	c := storyv1connect.NewStoryServiceClient(h2c, f.URL)
	kim := f.Token(t, "kim", auth.Walker)
	ctx := context.Background()
	if _, err := c.SetNotifications(ctx, withToken(&storyv1.SetNotificationsRequest{Email: "kim@family.example"}, kim)); err != nil {
		t.Fatal(err)
	}
	names := []string{upload(t, c, kim, pagetest.Render(t, storyPage, 28)), upload(t, c, kim, blank())}
	res, err := c.RequestStories(ctx, withToken(&storyv1.RequestStoriesRequest{UploadNames: names, Langs: []string{"en"}}, kim))
	if err != nil || len(res.Msg.StoryIds) != 2 {
		t.Fatalf("RequestStories: %v, %v", res, err)
	}
	again, err := c.RequestStories(ctx, withToken(&storyv1.RequestStoriesRequest{UploadNames: names, Langs: []string{"en"}}, kim))
	if err != nil || !again.Msg.Duplicate || again.Msg.BatchId != res.Msg.BatchId {
		t.Fatalf("the same request again: %v, %v", again, err)
	}
	ok := waitStory(t, c, kim, res.Msg.StoryIds[0], notified)
	failed := waitStory(t, c, kim, res.Msg.StoryIds[1], notified)
	if ok.Stage != storyv1.Stage_STAGE_NOTIFIED || failed.Stage != storyv1.Stage_STAGE_FAILED || !strings.Contains(failed.Failure, "no text") {
		t.Fatalf("stages %v, %v (%s)", ok.Stage, failed.Stage, failed.Failure)
	}
	mails := mail.Received()
	if len(mails) != 1 {
		t.Fatalf("%d mails, want one combined", len(mails))
	}
	_, subject, text := smtptest.Read(t, mails[0].Data)
	if subject != "1 of 2 pages are ready" || !strings.Contains(text, "Page 1:") || !strings.Contains(text, "Page 2: we could not read it aloud") {
		t.Errorf("mail %q:\n%s", subject, text)
	}
}

// BenchmarkStoryBurst uploads a burst of 200 distinct pages at once and
// waits until every story is told (by e-mail, through a real SMTP
// server): it reports the throughput, each story's time from request to
// e-mail (p50, p99) and the peak heap while the burst drains (the server
// runs in this process), and fails if one is lost.
func BenchmarkStoryBurst(b *testing.B) {
	mediatest.Need(b, "tesseract", "tesseract-ocr")
	mediatest.Need(b, "espeak-ng", "espeak-ng")
	for range b.N {
		r := storyBurst(b, 200)
		b.ReportMetric(r.perSecond, "stories/s")
		b.ReportMetric(r.p50.Seconds(), "p50-s")
		b.ReportMetric(r.p99.Seconds(), "p99-s")
		b.ReportMetric(r.peakHeapMiB, "peak-heap-MiB")
	}
}

// A burst of pages requested at once all reach their readers: none is
// stuck at a stage (as they were when a reaction read a story from a
// cache not yet holding the commit it handled), none is told twice.
func TestStoryBurstLosesNone(t *testing.T) {
	needStoryEngines(t)
	t.Parallel()
	storyBurst(t, 10) // more pages than engine slots; BenchmarkStoryBurst takes 200
}

type burstFigures struct {
	perSecond   float64
	p50, p99    time.Duration
	peakHeapMiB float64
}

// storyBurst requests n distinct pages at once and waits until each is
// told, failing if one is not within 15 s a page.
func storyBurst(tb testing.TB, n int) burstFigures {
	tb.Helper()
	pages := make([][]byte, n)
	for i := range pages {
		pages[i] = pagetest.Render(tb, []string{storyPage[0], fmt.Sprintf("This is page number %d of the burst.", i+1)}, 24)
	}
	mail := smtptest.Start(tb, nil)
	f := start(tb, func(m *server.Main) {
		m.Config.SMTP = smtpadapter.Config{Host: mail.Host, Port: mail.Port, TLS: smtpadapter.NoTLS, From: "noreply@tideline.example", Timeout: 5 * time.Second}
	})
	c := storyv1connect.NewStoryServiceClient(h2c, f.URL)
	kim := f.Token(tb, "kim", auth.Walker)
	ctx := context.Background()
	if _, err := c.SetNotifications(ctx, withToken(&storyv1.SetNotificationsRequest{Email: "kim@family.example"}, kim)); err != nil {
		tb.Fatal(err)
	}
	names := make([]string, n)
	for i, p := range pages {
		names[i] = upload(tb, c, kim, p)
	}
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	asked := make(map[string]time.Time, n)
	for _, name := range names {
		res, err := c.RequestStory(ctx, withToken(&storyv1.RequestStoryRequest{UploadName: name, Langs: []string{"en"}}, kim))
		if err != nil {
			tb.Fatal(err)
		}
		asked[res.Msg.StoryId] = time.Now()
	}
	var lat []time.Duration
	told := map[string]bool{}
	tick := time.NewTicker(100 * time.Millisecond) // the latency's resolution
	defer tick.Stop()
	wait := time.Duration(n) * 15 * time.Second
	deadline := time.After(wait)
	for len(told) < n {
		select {
		case <-deadline:
			stages := map[storyv1.Stage]int{}
			for id := range asked {
				if res, err := c.GetStory(ctx, withToken(&storyv1.GetStoryRequest{StoryId: id}, kim)); err == nil {
					stages[res.Msg.Story.Stage]++
				}
			}
			tb.Fatalf("%d of %d stories told after %s: stages %v", len(told), n, wait, stages)
		case <-tick.C:
		}
		for id, at := range asked {
			if told[id] {
				continue
			}
			res, err := c.GetStory(ctx, withToken(&storyv1.GetStoryRequest{StoryId: id}, kim))
			if err != nil {
				tb.Fatal(err)
			}
			if res.Msg.Story.NotifiedChannel == "" {
				continue
			}
			if res.Msg.Story.Stage != storyv1.Stage_STAGE_NOTIFIED {
				tb.Fatalf("story %s: %v %s", id, res.Msg.Story.Stage, res.Msg.Story.Failure)
			}
			told[id] = true
			lat = append(lat, time.Since(at))
		}
	}
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if got := len(mail.Received()); got != n {
		tb.Fatalf("%d mails for %d stories", got, n)
	}
	slices.Sort(lat)
	return burstFigures{perSecond: float64(n) / elapsed.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], peakHeapMiB: float64(peak) / (1 << 20)}
}

// WatchStory streams a story's stages and ends once its user is told.
func TestWatchStory(t *testing.T) {
	needStoryEngines(t)
	t.Parallel()
	f, _ := storyServer(t)
	c := storyv1connect.NewStoryServiceClient(h2c, f.URL)
	kim := f.Token(t, "kim", auth.Walker)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := c.RequestStory(ctx, withToken(&storyv1.RequestStoryRequest{UploadName: upload(t, c, kim, pagetest.Render(t, storyPage, 28))}, kim))
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.WatchStory(ctx, withToken(&storyv1.WatchStoryRequest{StoryId: res.Msg.StoryId}, kim))
	if err != nil {
		t.Fatal(err)
	}
	var stages []storyv1.Stage
	for w.Receive() {
		stages = append(stages, w.Msg().Story.Stage)
	}
	if w.Err() != nil || len(stages) == 0 || stages[len(stages)-1] != storyv1.Stage_STAGE_NOTIFIED || !slices.IsSorted(stages) {
		t.Fatalf("stages %v, err %v", stages, w.Err())
	}
}
