package api_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/adapters/tesseract/pagetest"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/domain/media/wav"
	"github.com/tideline/tideline/domain/rewards"
	"github.com/tideline/tideline/internal/poll"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/labeling/v1/labelingv1connect"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/notify/v1/notifyv1connect"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/rewards/v1/rewardsv1connect"
)

// labelingServer starts a server whose verification batch runs every
// second, and whose raffles are drawn within 200 ms of their time.
func labelingServer(t testing.TB) *servertest.Server {
	t.Helper()
	return start(t, func(m *server.Main) { m.Config.VerifyEvery, m.Config.RaffleTick = time.Second, 200*time.Millisecond })
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// put PUTs data to a signed upload URL.
func put(t testing.TB, url, contentType string, data []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(data))
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT upload: %s", resp.Status)
	}
}

// uploadItems creates a dataset of files and has it approved; it
// returns the dataset id and each file's item id.
func uploadItems(t *testing.T, ds labelingv1connect.DatasetServiceClient, owner, admin string, kind labelingv1.Kind, contentType string, files [][]byte) (string, []string) {
	t.Helper()
	ctx := context.Background()
	created, err := ds.CreateDataset(ctx, withToken(&labelingv1.CreateDatasetRequest{Name: "set " + t.Name(), Kind: kind,
		Instructions: "Type exactly what you see or hear.", LabelsPerItem: 3}, owner))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Msg.Dataset.DatasetId
	req := &labelingv1.CreateUploadsRequest{DatasetId: id}
	var shas []string
	for _, f := range files {
		req.Files = append(req.Files, &labelingv1.FileToUpload{Sha256: sha(f), Size: int64(len(f)), ContentType: contentType})
		shas = append(shas, sha(f))
	}
	ups, err := ds.CreateUploads(ctx, withToken(req, owner))
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range ups.Msg.Uploads {
		if u.Status == labelingv1.UploadStatus_UPLOAD_STATUS_UPLOAD {
			put(t, u.Url, contentType, files[i])
		}
	}
	added, err := ds.AddItems(ctx, withToken(&labelingv1.AddItemsRequest{DatasetId: id, Sha256S: shas}, owner))
	if err != nil {
		t.Fatal(err)
	}
	items := make([]string, len(files))
	for i, r := range added.Msg.Results {
		items[i] = r.ItemId
	}
	if _, err := ds.SubmitDataset(ctx, withToken(&labelingv1.SubmitDatasetRequest{DatasetId: id}, owner)); err != nil {
		t.Fatal(err)
	}
	if _, err := ds.ReviewDataset(ctx, withToken(&labelingv1.ReviewDatasetRequest{DatasetId: id, Approve: true}, admin)); err != nil {
		t.Fatal(err)
	}
	return id, items
}

func waitDataset(t *testing.T, ds labelingv1connect.DatasetServiceClient, tok, id, what string, cond func(*labelingv1.Dataset) bool) *labelingv1.Dataset {
	t.Helper()
	var d *labelingv1.Dataset
	poll.Until(t, 3*time.Minute, what, func() bool {
		res, err := ds.GetDataset(context.Background(), withToken(&labelingv1.GetDatasetRequest{DatasetId: id}, tok))
		if err != nil {
			t.Fatal(err)
		}
		d = res.Msg.Dataset
		return cond(d)
	})
	return d
}

func code(err error) connect.Code {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return 0
}

// Two OCR pages go from upload to verified labels: preprocessing cuts
// each text line into a task (real tesseract), three labelers do their
// wake-up missions, the verification batch accepts the agreeing labels
// and rejects the outlier, and the enterprise exports them.
func TestLabelingEndToEnd(t *testing.T) {
	mediatest.Need(t, "tesseract", "tesseract-ocr")
	t.Parallel()
	f := labelingServer(t)
	ds := labelingv1connect.NewDatasetServiceClient(h2c, f.URL)
	ms := labelingv1connect.NewMissionServiceClient(h2c, f.URL)
	acme, root := f.Token(t, "acme", auth.Enterprise), f.Token(t, "root", auth.Admin)
	ctx := context.Background()
	pages := [][]string{
		{"Seoul Station", "Gangnam Exit 11", "Coffee and Bread"},
		{"Delivery Zone 7", "Open Until Midnight"},
	}
	var files [][]byte
	for _, p := range pages {
		files = append(files, pagetest.Render(t, p, 36))
	}
	id, items := uploadItems(t, ds, acme, root, labelingv1.Kind_KIND_OCR_IMAGES, "image/png", files)
	truth := map[string]string{}
	for i, p := range pages {
		for n, line := range p {
			truth[labeling.TaskID(items[i], n)] = line
		}
	}
	d := waitDataset(t, ds, acme, id, "preprocessing", func(d *labelingv1.Dataset) bool { return d.State == labelingv1.State_STATE_LABELING })
	if d.Progress.Tasks != 5 || d.Progress.ItemsFailed != 0 {
		t.Fatalf("preprocessed into %d tasks, %d failed: %+v", d.Progress.Tasks, d.Progress.ItemsFailed, d.Failed)
	}

	// Three labelers answer every task; lee gets one wrong.
	for _, who := range []string{"kim", "park", "lee"} {
		tok := f.Token(t, who, auth.Labeler)
		if _, err := ms.SetAlarm(ctx, withToken(&labelingv1.SetAlarmRequest{Alarm: &labelingv1.Alarm{AlarmId: "morning", Time: "06:30", TimeZone: "Asia/Seoul", Enabled: true}}, tok)); err != nil {
			t.Fatal(err)
		}
		done := 0
		for done < 5 {
			m, err := ms.StartMission(ctx, withToken(&labelingv1.StartMissionRequest{AlarmId: "morning"}, tok))
			if err != nil {
				t.Fatalf("%s after %d answers: %v", who, done, err)
			}
			var answers []*labelingv1.Answer
			for _, task := range m.Msg.Mission.Tasks {
				text, ok := truth[task.TaskId]
				if !ok {
					t.Fatalf("task %s is not one of the dataset's", task.TaskId)
				}
				resp, err := http.Get(task.MediaUrl)
				if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/png" {
					t.Fatalf("task media: %v %v", resp, err)
				}
				resp.Body.Close()
				if who == "lee" && text == "Gangnam Exit 11" {
					text = "Busan Station"
				}
				answers = append(answers, &labelingv1.Answer{TaskId: task.TaskId, Text: strings.ToLower(text)})
			}
			res, err := ms.SubmitAnswers(ctx, withToken(&labelingv1.SubmitAnswersRequest{MissionId: m.Msg.Mission.MissionId, Answers: answers}, tok))
			if err != nil || !res.Msg.Completed {
				t.Fatalf("submit: %v %v", res, err)
			}
			done += len(answers)
		}
		if _, err := ms.StartMission(ctx, withToken(&labelingv1.StartMissionRequest{}, tok)); code(err) != connect.CodeFailedPrecondition {
			t.Fatalf("%s has done every task; another mission: %v", who, err)
		}
	}

	d = waitDataset(t, ds, acme, id, "verification", func(d *labelingv1.Dataset) bool { return d.Progress.Verified == 5 })
	if d.Progress.Accepted != 5 || d.Progress.Labels != 15 {
		t.Fatalf("progress %+v", d.Progress)
	}
	stats, err := ms.GetLabelerStats(ctx, withToken(&labelingv1.GetLabelerStatsRequest{}, f.Token(t, "lee", auth.Labeler)))
	if err != nil || stats.Msg.LabelsAccepted != 4 || stats.Msg.LabelsRejected != 1 || stats.Msg.MissionsCompleted != 2 {
		t.Fatalf("lee's stats %+v %v", stats.Msg, err)
	}

	// Export: JSON Lines, one verified task a line, in the labelers' case-
	// insensitive agreement; COCO-Text with boxes.
	lines := export(t, ds, acme, id, labelingv1.ExportFormat_EXPORT_FORMAT_JSONL)
	sc := bufio.NewScanner(bytes.NewReader(lines))
	n := 0
	for sc.Scan() {
		var rec struct {
			TaskID string  `json:"task_id"`
			Answer string  `json:"answer"`
			BBox   *[4]int `json:"bbox"`
			Labels []struct {
				Accepted bool `json:"accepted"`
			} `json:"labels"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		if want := strings.ToLower(truth[rec.TaskID]); rec.Answer != want || rec.BBox == nil || rec.BBox[2] <= 0 || len(rec.Labels) != 3 {
			t.Fatalf("exported %+v, want answer %q and a box", rec, want)
		}
		n++
	}
	if n != 5 {
		t.Fatalf("%d lines exported, want 5", n)
	}
	var coco struct {
		Imgs map[string]any `json:"imgs"`
		Anns map[string]struct {
			BBox []float64 `json:"bbox"`
			Text string    `json:"utf8_string"`
		} `json:"anns"`
	}
	if err := json.Unmarshal(export(t, ds, acme, id, labelingv1.ExportFormat_EXPORT_FORMAT_COCO_TEXT), &coco); err != nil {
		t.Fatal(err)
	}
	if len(coco.Imgs) != 2 || len(coco.Anns) != 5 {
		t.Fatalf("COCO-Text: %d images, %d annotations", len(coco.Imgs), len(coco.Anns))
	}

	// acme was told, in its inbox, of the approval and of the tasks made.
	inbox := notifyv1connect.NewNotificationServiceClient(h2c, f.URL)
	poll.Until(t, 30*time.Second, "acme's inbox to hold the dataset's news", func() bool {
		res, err := inbox.ListNotifications(ctx, withToken(&notifyv1.ListNotificationsRequest{}, acme))
		if err != nil {
			t.Fatal(err)
		}
		var titles []string
		for _, n := range res.Msg.Notifications {
			titles = append(titles, n.Title+": "+n.Body)
		}
		return slices.Contains(titles, "Dataset ready for labeling: set TestLabelingEndToEnd: 5 tasks are ready for labelers.") &&
			slices.Contains(titles, "Dataset approved: set TestLabelingEndToEnd was approved; its items are being cut into tasks.")
	})

	// Their work earned points: 10 a completed mission, 5 an accepted
	// label, and the day's stamp.
	rw := rewardsv1connect.NewRewardsServiceClient(h2c, f.URL)
	want := map[string]int64{"kim": 2*10 + 5*5, "park": 2*10 + 5*5, "lee": 2*10 + 4*5}
	for who, points := range want {
		tok := f.Token(t, who, auth.Labeler)
		poll.Until(t, 30*time.Second, who+"'s points", func() bool {
			res, err := rw.GetAccount(ctx, withToken(&rewardsv1.GetAccountRequest{}, tok))
			if err != nil {
				t.Fatal(err)
			}
			a := res.Msg.Account
			if a.Balance > points {
				t.Fatalf("%s has %d points, more than the %d earned", who, a.Balance, points)
			}
			return a.Balance == points && a.Streak == 1
		})
	}

	// They spend them on a raffle, drawn verifiably: the winner is
	// told, the others that it is drawn.
	opened, err := rw.OpenRaffle(ctx, withToken(&rewardsv1.OpenRaffleRequest{RaffleId: "coffee", Prize: "a coffee voucher", EntryCost: 20,
		MaxEntriesPerPerson: 2, Winners: 1, DrawAt: ts(2 * time.Second)}, root))
	if err != nil {
		t.Fatal(err)
	}
	for who, tickets := range map[string]int32{"kim": 2, "lee": 2} {
		if _, err := rw.EnterRaffle(ctx, withToken(&rewardsv1.EnterRaffleRequest{RaffleId: "coffee", Tickets: tickets}, f.Token(t, who, auth.Labeler))); err != nil {
			t.Fatalf("%s enters: %v", who, err)
		}
	}
	if _, err := rw.EnterRaffle(ctx, withToken(&rewardsv1.EnterRaffleRequest{RaffleId: "coffee", Tickets: 1}, f.Token(t, "kim", auth.Labeler))); code(err) != connect.CodeFailedPrecondition {
		t.Fatalf("kim's third ticket (2 a person, 5 points left): %v", err)
	}
	var raffle *rewardsv1.Raffle
	poll.Until(t, 30*time.Second, "the draw", func() bool {
		res, err := rw.GetRaffle(ctx, withToken(&rewardsv1.GetRaffleRequest{RaffleId: "coffee"}, root))
		if err != nil {
			t.Fatal(err)
		}
		raffle = res.Msg.Raffle
		return raffle.State == rewardsv1.RaffleState_RAFFLE_STATE_DRAWN
	})
	seed, _ := hex.DecodeString(raffle.Seed)
	if sum := sha256.Sum256(seed); hex.EncodeToString(sum[:]) != opened.Msg.Raffle.SeedSha256 || len(raffle.Winners) != 1 {
		t.Fatalf("drawn %+v: the revealed seed is not the one published", raffle)
	}
	var tickets []rewards.Ticket
	for _, e := range raffle.Entries {
		for range e.Tickets {
			tickets = append(tickets, rewards.Ticket{UserID: e.UserId})
		}
	}
	if again := rewards.DrawWinners(seed, tickets, 1); len(again) != 1 || again[0] != raffle.Winners[0] {
		t.Fatalf("recomputed winners %v, drawn %v", again, raffle.Winners)
	}
	for who, title := range map[string]string{"kim": "Raffle drawn", "lee": "Raffle drawn", raffle.Winners[0]: "You won!"} {
		tok := f.Token(t, who, auth.Labeler)
		poll.Until(t, 30*time.Second, who+" told of the draw", func() bool {
			res, err := inbox.ListNotifications(ctx, withToken(&notifyv1.ListNotificationsRequest{}, tok))
			if err != nil {
				t.Fatal(err)
			}
			return len(res.Msg.Notifications) > 0 && res.Msg.Notifications[0].Title == title && res.Msg.Notifications[0].Topic == notifyv1.Topic_TOPIC_RAFFLE_RESULT
		})
	}

	// Another enterprise does not see it.
	other := f.Token(t, "globex", auth.Enterprise)
	if _, err := ds.GetDataset(ctx, withToken(&labelingv1.GetDatasetRequest{DatasetId: id}, other)); code(err) != connect.CodeNotFound {
		t.Fatalf("another enterprise's GetDataset: %v", err)
	}
}

func export(t *testing.T, ds labelingv1connect.DatasetServiceClient, tok, id string, format labelingv1.ExportFormat) []byte {
	t.Helper()
	s, err := ds.ExportLabels(context.Background(), withToken(&labelingv1.ExportLabelsRequest{DatasetId: id, Format: format}, tok))
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for s.Receive() {
		out = append(out, s.Msg().Data...)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Bad input is refused with the field named and leaves nothing in the
// event store; roles see only their own.
func TestLabelingRejects(t *testing.T) {
	t.Parallel()
	f := labelingServer(t)
	ds := labelingv1connect.NewDatasetServiceClient(h2c, f.URL)
	ms := labelingv1connect.NewMissionServiceClient(h2c, f.URL)
	acme, kim := f.Token(t, "acme", auth.Enterprise), f.Token(t, "kim", auth.Labeler)
	ctx := context.Background()
	created, err := ds.CreateDataset(ctx, withToken(&labelingv1.CreateDatasetRequest{Name: "voices", Kind: labelingv1.Kind_KIND_AUDIO}, acme))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Msg.Dataset.DatasetId
	if created.Msg.Dataset.LabelsPerItem != labeling.DefaultLabelsPerItem {
		t.Fatalf("labels per item default %d", created.Msg.Dataset.LabelsPerItem)
	}
	before := f.Last(t)
	good := sha([]byte("x"))
	for _, tc := range []struct {
		name  string
		call  func() error
		code  connect.Code
		field string
	}{
		{"empty_name", func() error {
			_, err := ds.CreateDataset(ctx, withToken(&labelingv1.CreateDatasetRequest{Kind: labelingv1.Kind_KIND_AUDIO}, acme))
			return err
		}, connect.CodeInvalidArgument, "name"},
		{"no_kind", func() error {
			_, err := ds.CreateDataset(ctx, withToken(&labelingv1.CreateDatasetRequest{Name: "x"}, acme))
			return err
		}, connect.CodeInvalidArgument, "kind"},
		{"past_deadline", func() error {
			_, err := ds.CreateDataset(ctx, withToken(&labelingv1.CreateDatasetRequest{Name: "x", Kind: labelingv1.Kind_KIND_AUDIO, Deadline: ts(-time.Hour)}, acme))
			return err
		}, connect.CodeInvalidArgument, "deadline"},
		{"same_name_other_settings", func() error {
			_, err := ds.CreateDataset(ctx, withToken(&labelingv1.CreateDatasetRequest{Name: "Voices", Kind: labelingv1.Kind_KIND_OCR_IMAGES}, acme))
			return err
		}, connect.CodeFailedPrecondition, "name"},
		{"labeler_creates_dataset", func() error {
			_, err := ds.CreateDataset(ctx, withToken(&labelingv1.CreateDatasetRequest{Name: "x", Kind: labelingv1.Kind_KIND_AUDIO}, kim))
			return err
		}, connect.CodePermissionDenied, ""},
		{"bad_sha", func() error {
			_, err := ds.CreateUploads(ctx, withToken(&labelingv1.CreateUploadsRequest{DatasetId: id, Files: []*labelingv1.FileToUpload{{Sha256: "abc", Size: 1, ContentType: "audio/wav"}}}, acme))
			return err
		}, connect.CodeInvalidArgument, "files[0].sha256"},
		{"image_into_audio", func() error {
			_, err := ds.CreateUploads(ctx, withToken(&labelingv1.CreateUploadsRequest{DatasetId: id, Files: []*labelingv1.FileToUpload{{Sha256: good, Size: 1, ContentType: "image/png"}}}, acme))
			return err
		}, connect.CodeInvalidArgument, "files[0].content_type"},
		{"too_large", func() error {
			_, err := ds.CreateUploads(ctx, withToken(&labelingv1.CreateUploadsRequest{DatasetId: id, Files: []*labelingv1.FileToUpload{{Sha256: good, Size: labeling.MaxAudioBytes + 1, ContentType: "audio/wav"}}}, acme))
			return err
		}, connect.CodeInvalidArgument, "files[0].size"},
		{"submit_empty", func() error {
			_, err := ds.SubmitDataset(ctx, withToken(&labelingv1.SubmitDatasetRequest{DatasetId: id}, acme))
			return err
		}, connect.CodeFailedPrecondition, ""},
		{"enterprise_reviews", func() error {
			_, err := ds.ReviewDataset(ctx, withToken(&labelingv1.ReviewDatasetRequest{DatasetId: id, Approve: true}, acme))
			return err
		}, connect.CodePermissionDenied, ""},
		{"reject_without_reason", func() error {
			_, err := ds.ReviewDataset(ctx, withToken(&labelingv1.ReviewDatasetRequest{DatasetId: id}, f.Token(t, "root", auth.Admin)))
			return err
		}, connect.CodeInvalidArgument, "reason"},
		{"enterprise_starts_mission", func() error {
			_, err := ms.StartMission(ctx, withToken(&labelingv1.StartMissionRequest{}, acme))
			return err
		}, connect.CodePermissionDenied, ""},
		{"no_tasks", func() error {
			_, err := ms.StartMission(ctx, withToken(&labelingv1.StartMissionRequest{}, kim))
			return err
		}, connect.CodeFailedPrecondition, ""},
		{"too_many_tasks", func() error {
			_, err := ms.StartMission(ctx, withToken(&labelingv1.StartMissionRequest{Tasks: 11}, kim))
			return err
		}, connect.CodeInvalidArgument, "tasks"},
		{"unknown_alarm", func() error {
			_, err := ms.StartMission(ctx, withToken(&labelingv1.StartMissionRequest{AlarmId: "nope"}, kim))
			return err
		}, connect.CodeNotFound, "alarm_id"},
		{"bad_alarm_time", func() error {
			_, err := ms.SetAlarm(ctx, withToken(&labelingv1.SetAlarmRequest{Alarm: &labelingv1.Alarm{AlarmId: "a", Time: "25:00"}}, kim))
			return err
		}, connect.CodeInvalidArgument, "alarm.time"},
		{"bad_zone", func() error {
			_, err := ms.SetAlarm(ctx, withToken(&labelingv1.SetAlarmRequest{Alarm: &labelingv1.Alarm{AlarmId: "a", Time: "06:00", TimeZone: "Nowhere/City"}}, kim))
			return err
		}, connect.CodeInvalidArgument, "alarm.time_zone"},
		{"answer_unknown_mission", func() error {
			_, err := ms.SubmitAnswers(ctx, withToken(&labelingv1.SubmitAnswersRequest{MissionId: "m1", Answers: []*labelingv1.Answer{{TaskId: "t", Text: "x"}}}, kim))
			return err
		}, connect.CodeFailedPrecondition, ""},
		{"empty_answer", func() error {
			_, err := ms.SubmitAnswers(ctx, withToken(&labelingv1.SubmitAnswersRequest{MissionId: "m1", Answers: []*labelingv1.Answer{{TaskId: "t", Text: "  "}}}, kim))
			return err
		}, connect.CodeInvalidArgument, "answers[0].text"},
		{"coco_of_audio", func() error {
			s, err := ds.ExportLabels(ctx, withToken(&labelingv1.ExportLabelsRequest{DatasetId: id, Format: labelingv1.ExportFormat_EXPORT_FORMAT_COCO_TEXT}, acme))
			if err == nil {
				for s.Receive() {
				}
				err = s.Err()
			}
			return err
		}, connect.CodeInvalidArgument, "format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if code(err) != tc.code || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("got %v, want %v naming %q", err, tc.code, tc.field)
			}
		})
	}
	if after := f.Last(t); after != before {
		t.Fatalf("bad input appended: position %d → %d", before, after)
	}

	// A file not uploaded yet is reported missing, and one whose content
	// is not its SHA-256 invalid; neither becomes an item.
	data := []byte("RIFF not really")
	ups, err := ds.CreateUploads(ctx, withToken(&labelingv1.CreateUploadsRequest{DatasetId: id, Files: []*labelingv1.FileToUpload{
		{Sha256: good, Size: int64(len(data)), ContentType: "audio/wav"}}}, acme))
	if err != nil {
		t.Fatal(err)
	}
	put(t, ups.Msg.Uploads[0].Url, "audio/wav", data)
	res, err := ds.AddItems(ctx, withToken(&labelingv1.AddItemsRequest{DatasetId: id, Sha256S: []string{good, sha([]byte("never sent"))}}, acme))
	if err != nil {
		t.Fatal(err)
	}
	if res.Msg.Invalid != 1 || res.Msg.Missing != 1 || res.Msg.Added != 0 {
		t.Fatalf("add results %+v", res.Msg.Results)
	}
}

// A recording of three sentences with pauses between them becomes three
// transcription tasks, each a WAV clip.
func TestLabelingAudioIsSplitAtSilences(t *testing.T) {
	t.Parallel()
	var pcm []byte
	for i, s := range []string{"The train leaves at seven.", "Please mind the gap.", "Next stop, city hall."} {
		clip, err := media.PCMFromWAV(say(t, "en-us", 150, s))
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			pcm = append(pcm, make([]byte, media.PCM.BytesPerSecond()*8/10)...) // 0.8 s of silence
		}
		pcm = append(pcm, clip...)
	}
	f := labelingServer(t)
	ds := labelingv1connect.NewDatasetServiceClient(h2c, f.URL)
	acme, root := f.Token(t, "acme", auth.Enterprise), f.Token(t, "root", auth.Admin)
	id, _ := uploadItems(t, ds, acme, root, labelingv1.Kind_KIND_AUDIO, "audio/wav", [][]byte{wav.Encode(pcm, media.PCM)})
	// The owner watches the dataset live until its tasks are ready.
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watch, err := ds.WatchDataset(wctx, withToken(&labelingv1.WatchDatasetRequest{DatasetId: id}, acme))
	if err != nil {
		t.Fatal(err)
	}
	var seen []labelingv1.State
	for watch.Receive() {
		st := watch.Msg().Dataset.State
		if len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		if st == labelingv1.State_STATE_LABELING {
			break
		}
	}
	if seen[len(seen)-1] != labelingv1.State_STATE_LABELING {
		t.Fatalf("watched %v, then %v", seen, watch.Err())
	}
	cancel()
	d := waitDataset(t, ds, acme, id, "preprocessing", func(d *labelingv1.Dataset) bool { return d.State == labelingv1.State_STATE_LABELING })
	if d.Progress.Tasks != 3 || d.Progress.ItemsFailed != 0 {
		t.Fatalf("%d tasks, failed %+v; want 3 clips", d.Progress.Tasks, d.Failed)
	}
	m, err := labelingv1connect.NewMissionServiceClient(h2c, f.URL).StartMission(context.Background(),
		withToken(&labelingv1.StartMissionRequest{Tasks: 3}, f.Token(t, "kim", auth.Labeler)))
	if err != nil || len(m.Msg.Mission.Tasks) != 3 {
		t.Fatalf("mission %v %v", m, err)
	}
	for _, task := range m.Msg.Mission.Tasks {
		resp, err := http.Get(task.MediaUrl)
		if err != nil {
			t.Fatal(err)
		}
		clip, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		pcm, err := media.PCMFromWAV(clip)
		if err != nil || task.MediaContentType != "audio/wav" || media.PCMDuration(pcm) < 500*time.Millisecond || media.PCMDuration(pcm) > 4*time.Second {
			t.Fatalf("clip %s: %s, %v", task.MediaContentType, media.PCMDuration(pcm), err)
		}
	}
}
