package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/image/font/gofont/goregular"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/rewards"
	"github.com/tideline/tideline/internal/pages"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/labeling/v1/labelingv1connect"
	notifyv1 "github.com/tideline/tideline/schemas/gen/tideline/notify/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/notify/v1/notifyv1connect"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/rewards/v1/rewardsv1connect"
)

// signs are the lines the demo's shop-sign pages say.
var signs = []string{"Seoul Station", "Gangnam Exit 11", "Coffee and Bread", "Open Until Midnight", "Delivery Zone 7",
	"Fresh Noodles", "Pharmacy", "Bus Stop 402", "Book Cafe", "Flower Market", "Night Bakery", "Bike Repair",
	"Fish Market Gate", "Tea House", "Hanok Village", "City Hall", "Subway Line 2", "Parking Level B2"}

// labelingSummary is what a labeling demo produced, as the API reported it.
type labelingSummary struct {
	Items, Duplicates, Tasks, Labels, Accepted, Rejected int
	Points                                               map[string]int64
	Winners                                              []string
	Verified                                             bool // the draw recomputed from the revealed seed
	Exported                                             int  // JSON Lines exported
	Inbox                                                int  // notifications the winner holds
}

type labelingDemo struct {
	c        demoConfig
	rng      *rand.Rand
	tokens   *api.Tokens
	ds       labelingv1connect.DatasetServiceClient
	ms       labelingv1connect.MissionServiceClient
	rw       rewardsv1connect.RewardsServiceClient
	inbox    notifyv1connect.NotificationServiceClient
	hc       *http.Client
	truth    map[string]string // task id → what its crop says
	sum      labelingSummary
	tok      map[string]string
	labelers []string
}

func (d *labelingDemo) call(ctx context.Context, who string) context.Context {
	return withBearer(ctx, d.tok[who])
}

func (d *labelingDemo) say(format string, args ...any) { fmt.Fprintf(d.c.out, format+"\n", args...) }

// runLabeling drives the belloga scenario: an enterprise's dataset from
// upload to verified labels, labelers' wake-up missions, their points,
// and a raffle drawn verifiably.
func runLabeling(ctx context.Context, c demoConfig) (*labelingSummary, error) {
	start := time.Now()
	if c.out == nil {
		c.out = io.Discard
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.server == "" {
		stop, err := c.embedded(ctx, func(cfg *server.Config) { cfg.VerifyEvery, cfg.RaffleTick = time.Second, 200*time.Millisecond },
			"; verification every second")
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	c.server = strings.TrimSuffix(c.server, "/")
	tokens, err := api.LoadTokens(c.data)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	d := &labelingDemo{c: c, rng: rand.New(rand.NewPCG(c.seed, c.seed^0x1abe1)), tokens: tokens, truth: map[string]string{},
		tok: map[string]string{}, sum: labelingSummary{Points: map[string]int64{}}, hc: &http.Client{Timeout: time.Minute}}
	opts := connect.WithInterceptors(bearer)
	d.ds = labelingv1connect.NewDatasetServiceClient(d.hc, c.server, opts)
	d.ms = labelingv1connect.NewMissionServiceClient(d.hc, c.server, opts)
	d.rw = rewardsv1connect.NewRewardsServiceClient(d.hc, c.server, opts)
	d.inbox = notifyv1connect.NewNotificationServiceClient(d.hc, c.server, opts)
	run := strings.ToLower(fmt.Sprintf("%x", time.Now().UnixMilli()%0xfffffff))
	for who, role := range map[string]auth.Role{"demo-admin": auth.Admin, "demo-acme": auth.Enterprise} {
		if d.tok[who], err = d.issue(who, role); err != nil {
			return nil, err
		}
	}
	for i := range c.labelers {
		who := fmt.Sprintf("labeler-%02d-%s", i+1, run)
		if d.tok[who], err = d.issue(who, auth.Labeler); err != nil {
			return nil, err
		}
		d.labelers = append(d.labelers, who)
	}
	id, err := d.upload(ctx, "Shop signs "+run)
	if err != nil {
		return nil, err
	}
	if err := d.preprocess(ctx, id); err != nil {
		return nil, err
	}
	if err := d.label(ctx); err != nil {
		return nil, err
	}
	if err := d.verify(ctx, id); err != nil {
		return nil, err
	}
	if err := d.raffle(ctx, "coffee-"+run); err != nil {
		return nil, err
	}
	if err := d.export(ctx, id); err != nil {
		return nil, err
	}
	d.say("\nDone in %s: %d pages (%d duplicate skipped) → %d tasks → %d labels (%d accepted, %d rejected); winners %v; draw verified: %v; %d labels exported.",
		time.Since(start).Round(time.Millisecond), d.sum.Items, d.sum.Duplicates, d.sum.Tasks, d.sum.Labels, d.sum.Accepted, d.sum.Rejected,
		d.sum.Winners, d.sum.Verified, d.sum.Exported)
	if c.hold {
		d.say("Server still running at %s; Ctrl-C to stop.", c.server)
		<-ctx.Done()
	}
	return &d.sum, nil
}

func (d *labelingDemo) issue(sub string, role auth.Role) (string, error) {
	tok, err := d.tokens.Issue(auth.Principal{Subject: sub, Role: role}, 24*time.Hour)
	if err != nil {
		return "", fmt.Errorf("demo: token for %s: %w", sub, err)
	}
	return tok, nil
}

// upload creates the dataset, uploads the pages (one twice) and has it
// approved.
func (d *labelingDemo) upload(ctx context.Context, name string) (string, error) {
	acme, admin := d.call(ctx, "demo-acme"), d.call(ctx, "demo-admin")
	created, err := d.ds.CreateDataset(acme, connect.NewRequest(&labelingv1.CreateDatasetRequest{Name: name, Kind: labelingv1.Kind_KIND_OCR_IMAGES,
		Instructions: "Type the sign's text exactly as written.", LabelsPerItem: 3}))
	if err != nil {
		return "", fmt.Errorf("demo: create dataset: %w", err)
	}
	id := created.Msg.Dataset.DatasetId
	d.say("demo-acme created dataset %q (%s): OCR images, 3 labels an item", name, id)
	var files [][]byte
	var lines [][]string
	for i := range d.c.pages {
		page := []string{signs[(3*i)%len(signs)], signs[(3*i+1)%len(signs)], fmt.Sprintf("No. %d%02d", i+1, d.rng.IntN(100))}
		png, err := pages.Render(goregular.TTF, page, 32)
		if err != nil {
			return "", err
		}
		files, lines = append(files, png), append(lines, page)
	}
	files, lines = append(files, files[0]), append(lines, lines[0]) // the same photo sent twice
	req := &labelingv1.CreateUploadsRequest{DatasetId: id}
	var shas []string
	for _, f := range files {
		sum := sha256.Sum256(f)
		shas = append(shas, hex.EncodeToString(sum[:]))
		req.Files = append(req.Files, &labelingv1.FileToUpload{Sha256: shas[len(shas)-1], Size: int64(len(f)), ContentType: "image/png"})
	}
	ups, err := d.ds.CreateUploads(acme, connect.NewRequest(req))
	if err != nil {
		return "", fmt.Errorf("demo: upload URLs: %w", err)
	}
	for i, u := range ups.Msg.Uploads {
		if u.Status != labelingv1.UploadStatus_UPLOAD_STATUS_UPLOAD {
			continue
		}
		put, _ := http.NewRequestWithContext(ctx, http.MethodPut, u.Url, bytes.NewReader(files[i]))
		put.Header.Set("Content-Type", "image/png")
		resp, err := d.hc.Do(put)
		if err != nil {
			return "", fmt.Errorf("demo: upload: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return "", fmt.Errorf("demo: upload: %s", resp.Status)
		}
	}
	added, err := d.ds.AddItems(acme, connect.NewRequest(&labelingv1.AddItemsRequest{DatasetId: id, Sha256S: shas}))
	if err != nil {
		return "", fmt.Errorf("demo: add items: %w", err)
	}
	for i, r := range added.Msg.Results {
		if r.Status == labelingv1.AddStatus_ADD_STATUS_ADDED {
			for n, line := range lines[i] {
				d.truth[labeling.TaskID(r.ItemId, n)] = line
			}
		}
	}
	d.sum.Items, d.sum.Duplicates = int(added.Msg.Added), int(added.Msg.Duplicates)
	d.say("Uploaded %d pages through signed URLs: %d items, %d duplicate skipped", len(files), added.Msg.Added, added.Msg.Duplicates)
	if _, err := d.ds.SubmitDataset(acme, connect.NewRequest(&labelingv1.SubmitDatasetRequest{DatasetId: id})); err != nil {
		return "", fmt.Errorf("demo: submit: %w", err)
	}
	if _, err := d.ds.ReviewDataset(admin, connect.NewRequest(&labelingv1.ReviewDatasetRequest{DatasetId: id, Approve: true})); err != nil {
		return "", fmt.Errorf("demo: review: %w", err)
	}
	d.say("Submitted; demo-admin approved it")
	return id, nil
}

// until polls f every 200 ms until it says done, for at most within.
func until(ctx context.Context, within time.Duration, what string, f func() (bool, error)) error {
	deadline := time.Now().Add(within)
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s: not done after %s", what, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond): // poll interval; the loop has a deadline
		}
	}
}

func (d *labelingDemo) dataset(ctx context.Context, id string) (*labelingv1.Dataset, error) {
	res, err := d.ds.GetDataset(d.call(ctx, "demo-acme"), connect.NewRequest(&labelingv1.GetDatasetRequest{DatasetId: id}))
	if err != nil {
		return nil, fmt.Errorf("demo: dataset: %w", err)
	}
	return res.Msg.Dataset, nil
}

func (d *labelingDemo) preprocess(ctx context.Context, id string) error {
	var ds *labelingv1.Dataset
	err := until(ctx, 10*time.Minute, "preprocessing", func() (bool, error) {
		var err error
		ds, err = d.dataset(ctx, id)
		return err == nil && ds.State == labelingv1.State_STATE_LABELING, err
	})
	if err != nil {
		return err
	}
	d.sum.Tasks = int(ds.Progress.Tasks)
	d.say("Preprocessed (tesseract): %d text lines became tasks, %d pages failed", ds.Progress.Tasks, ds.Progress.ItemsFailed)
	for _, f := range ds.Failed {
		d.say("  failed %s: %s", f.ItemId, f.Reason)
	}
	return nil
}

// label has every labeler set an alarm, then wakes them morning after
// morning, each doing one mission a morning, until no task is left for
// anyone; the last labeler is sloppy.
func (d *labelingDemo) label(ctx context.Context) error {
	for i, who := range d.labelers {
		if _, err := d.ms.SetAlarm(d.call(ctx, who), connect.NewRequest(&labelingv1.SetAlarmRequest{Alarm: &labelingv1.Alarm{
			AlarmId: "morning", Time: fmt.Sprintf("06:%02d", 10*i%60), Weekdays: []int32{1, 2, 3, 4, 5}, TimeZone: "Asia/Seoul", Enabled: true}})); err != nil {
			return fmt.Errorf("demo: alarm: %w", err)
		}
	}
	missions := map[string]int{}
	for morning := 1; ; morning++ {
		woke := 0
		for i, who := range d.labelers {
			lctx := d.call(ctx, who)
			m, err := d.ms.StartMission(lctx, connect.NewRequest(&labelingv1.StartMissionRequest{AlarmId: "morning"}))
			if connect.CodeOf(err) == connect.CodeFailedPrecondition {
				continue // nothing left for this labeler
			}
			if err != nil {
				return fmt.Errorf("demo: start mission: %w", err)
			}
			var answers []*labelingv1.Answer
			for _, t := range m.Msg.Mission.Tasks {
				text, ok := d.truth[t.TaskId]
				if !ok {
					text = "?" // a task of another dataset on this server
				}
				if i == len(d.labelers)-1 && d.rng.IntN(2) == 0 {
					text = signs[d.rng.IntN(len(signs))]
				}
				answers = append(answers, &labelingv1.Answer{TaskId: t.TaskId, Text: text})
			}
			if _, err := d.ms.SubmitAnswers(lctx, connect.NewRequest(&labelingv1.SubmitAnswersRequest{MissionId: m.Msg.Mission.MissionId, Answers: answers})); err != nil {
				return fmt.Errorf("demo: answers: %w", err)
			}
			missions[who]++
			d.sum.Labels += len(answers)
			woke++
		}
		if woke == 0 {
			break
		}
		d.say("Morning %d: %d labelers' alarms rang; each labeled 3 tasks to turn theirs off", morning, woke)
	}
	d.say("%d labels given; %s is sloppy (half of its answers are wrong)", d.sum.Labels, d.labelers[len(d.labelers)-1])
	return nil
}

func (d *labelingDemo) verify(ctx context.Context, id string) error {
	d.say("Waiting for the verification batch (weighted agreement)...")
	var ds *labelingv1.Dataset
	err := until(ctx, 5*time.Minute, "verification", func() (bool, error) {
		var err error
		ds, err = d.dataset(ctx, id)
		return err == nil && int(ds.Progress.Verified) >= d.sum.Tasks, err
	})
	if err != nil {
		return err
	}
	d.say("Verified %d tasks: %d accepted, %d unresolved", ds.Progress.Verified, ds.Progress.Accepted, ds.Progress.Unresolved)
	for _, who := range d.labelers {
		st, err := d.ms.GetLabelerStats(d.call(ctx, who), connect.NewRequest(&labelingv1.GetLabelerStatsRequest{}))
		if err != nil {
			return fmt.Errorf("demo: stats: %w", err)
		}
		d.sum.Accepted += int(st.Msg.LabelsAccepted)
		d.sum.Rejected += int(st.Msg.LabelsRejected)
		var acc *rewardsv1.Account
		err = until(ctx, time.Minute, "points", func() (bool, error) {
			res, err := d.rw.GetAccount(d.call(ctx, who), connect.NewRequest(&rewardsv1.GetAccountRequest{}))
			if err != nil {
				return false, err
			}
			acc = res.Msg.Account
			return acc.Balance == 10*int64(st.Msg.MissionsCompleted)+5*int64(st.Msg.LabelsAccepted), nil
		})
		if err != nil {
			return err
		}
		d.sum.Points[who] = acc.Balance
		d.say("  %s: %d labels accepted, %d rejected → %d points, streak %d", who, st.Msg.LabelsAccepted, st.Msg.LabelsRejected, acc.Balance, acc.Streak)
	}
	return nil
}

// raffle opens a raffle, has every labeler who can afford it enter, and
// checks the draw against the seed it reveals.
func (d *labelingDemo) raffle(ctx context.Context, id string) error {
	admin := d.call(ctx, "demo-admin")
	opened, err := d.rw.OpenRaffle(admin, connect.NewRequest(&rewardsv1.OpenRaffleRequest{RaffleId: id, Prize: "a coffee voucher",
		EntryCost: 20, MaxEntriesPerPerson: 3, Winners: 1, DrawAt: timestamppb.New(time.Now().Add(3 * time.Second))}))
	if err != nil {
		return fmt.Errorf("demo: open raffle: %w", err)
	}
	d.say("demo-admin opened raffle %s (a coffee voucher, 20 points a ticket), seed SHA-256 %s…", id, opened.Msg.Raffle.SeedSha256[:16])
	for _, who := range d.labelers {
		tickets := min(d.sum.Points[who]/20, 3)
		if tickets == 0 {
			continue
		}
		if _, err := d.rw.EnterRaffle(d.call(ctx, who), connect.NewRequest(&rewardsv1.EnterRaffleRequest{RaffleId: id, Tickets: int32(tickets)})); err != nil {
			return fmt.Errorf("demo: enter raffle: %w", err)
		}
		d.say("  %s bought %d tickets", who, tickets)
	}
	var r *rewardsv1.Raffle
	err = until(ctx, 2*time.Minute, "the draw", func() (bool, error) {
		res, err := d.rw.GetRaffle(admin, connect.NewRequest(&rewardsv1.GetRaffleRequest{RaffleId: id}))
		if err != nil {
			return false, err
		}
		r = res.Msg.Raffle
		return r.State == rewardsv1.RaffleState_RAFFLE_STATE_DRAWN, nil
	})
	if err != nil {
		return err
	}
	seed, _ := hex.DecodeString(r.Seed)
	var tickets []rewards.Ticket
	for _, e := range r.Entries {
		for range e.Tickets {
			tickets = append(tickets, rewards.Ticket{UserID: e.UserId})
		}
	}
	again := rewards.DrawWinners(seed, tickets, int(r.WinnersCount))
	sum := sha256.Sum256(seed)
	d.sum.Winners = r.Winners
	d.sum.Verified = hex.EncodeToString(sum[:]) == opened.Msg.Raffle.SeedSha256 && strings.Join(again, ",") == strings.Join(r.Winners, ",")
	d.say("Drawn: %d tickets, winner %v; revealed seed hashes to the published SHA-256 and recomputes the same winners: %v", r.TicketsTotal, r.Winners, d.sum.Verified)
	if len(r.Winners) > 0 {
		w := r.Winners[0]
		err = until(ctx, time.Minute, "the winner's inbox", func() (bool, error) {
			res, err := d.inbox.ListNotifications(d.call(ctx, w), connect.NewRequest(&notifyv1.ListNotificationsRequest{}))
			if err != nil {
				return false, err
			}
			d.sum.Inbox = len(res.Msg.Notifications)
			return len(res.Msg.Notifications) > 0 && res.Msg.Notifications[0].Topic == notifyv1.Topic_TOPIC_RAFFLE_RESULT, nil
		})
		if err != nil {
			return err
		}
		d.say("  %s's inbox holds %d notifications, the newest: \"You won!\"", w, d.sum.Inbox)
	}
	return nil
}

func (d *labelingDemo) export(ctx context.Context, id string) error {
	s, err := d.ds.ExportLabels(d.call(ctx, "demo-acme"), connect.NewRequest(&labelingv1.ExportLabelsRequest{DatasetId: id}))
	if err != nil {
		return fmt.Errorf("demo: export: %w", err)
	}
	var out []byte
	for s.Receive() {
		out = append(out, s.Msg().Data...)
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("demo: export: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	first := ""
	for sc.Scan() {
		if d.sum.Exported == 0 {
			first = sc.Text()
		}
		d.sum.Exported++
	}
	if d.sum.Exported == 0 {
		return errors.New("demo: the export is empty")
	}
	d.say("demo-acme exported %d verified labels (JSON Lines); the first:\n  %s", d.sum.Exported, first)
	return nil
}
