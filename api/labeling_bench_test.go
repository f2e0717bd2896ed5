package api_test

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/tesseract"
	"github.com/tideline/tideline/adapters/tesseract/pagetest"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/labeling/v1/labelingv1connect"
	mediav1 "github.com/tideline/tideline/schemas/gen/tideline/media/v1"
)

var (
	benchItems    = flag.Int("labeling.items", 1000, "BenchmarkPreprocess: images in the dataset")
	benchTasks    = flag.Int("labeling.tasks", 10000, "BenchmarkStartMission: open tasks")
	benchLabelers = flag.Int("labeling.labelers", 1000, "BenchmarkStartMission: labelers, each starting one mission")
	benchLabels   = flag.Int("labeling.labels", 100000, "BenchmarkVerify: labels to verify (three a task)")
)

// seedTasks appends an approved dataset of n OCR tasks straight to the
// store (as preprocessing would) and returns its id and the last position.
// The approval comes last, in the commit that finishes preprocessing, so
// the preprocessing reaction finds nothing left to do.
func seedTasks(tb testing.TB, f *servertest.Server, name string, n int, want int32) (string, uint64) {
	tb.Helper()
	ctx := context.Background()
	id := labeling.DatasetID("acme", name)
	stream := labeling.DatasetStream(id)
	const perItem = 100
	items := &labelingv1.ItemsAdded{DatasetId: id}
	for i := 0; i*perItem < n; i++ {
		items.Items = append(items.Items, &labelingv1.Item{ItemId: fmt.Sprintf("%s-i%d", id, i),
			Blob: &mediav1.BlobRef{Bucket: labeling.Bucket, Name: fmt.Sprintf("item-%d.png", i), Sha256: fmt.Sprintf("%064x", i), Size: 1000, ContentType: "image/png"}})
	}
	appendAll := func(events ...proto.Message) uint64 {
		res, err := f.Store.Append(ctx, stream, events, es.AppendOptions{ExpectedVersion: es.AnyVersion})
		if err != nil {
			tb.Fatal(err)
		}
		return res.Position.Seq
	}
	appendAll(&labelingv1.DatasetCreated{DatasetId: id, OwnerId: "acme", Name: name, Kind: labelingv1.Kind_KIND_OCR_IMAGES,
		LabelsPerItem: want, CreatedAt: timestamppb.Now()}, items, &labelingv1.DatasetSubmitted{DatasetId: id})
	var last uint64
	done := 0
	for _, it := range items.Items {
		e := &labelingv1.ItemPreprocessed{DatasetId: id, ItemId: it.ItemId}
		for k := 0; k < perItem && len(e.Tasks)+done < n; k++ {
			tid := labeling.TaskID(it.ItemId, k)
			e.Tasks = append(e.Tasks, &labelingv1.Task{TaskId: tid, ItemId: it.ItemId, Box: &labelingv1.Box{X: 10, Y: 20 * int32(k), W: 300, H: 18},
				Media: &mediav1.BlobRef{Bucket: labeling.Bucket, Name: tid + ".png", Sha256: fmt.Sprintf("%064x", k), Size: 900, ContentType: "image/png"}})
		}
		appendAll(e)
		done += len(e.Tasks)
	}
	last = appendAll(&labelingv1.DatasetApproved{DatasetId: id}, &labelingv1.PreprocessingFinished{DatasetId: id, Tasks: int32(n)})
	return id, last
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkStartMission: labelers (default 1,000) each start a mission
// against a pool of open tasks (default 10,000), 32 at a time over HTTP;
// beside it, in the same run, as many GetLabelerStats calls (a read of
// the same model through the same stack) as the baseline.
//
//	go test ./api/ -run '^$' -bench StartMission -benchtime 1x
func BenchmarkStartMission(b *testing.B) {
	for range b.N {
		f := start(b)
		ds := labelingv1connect.NewDatasetServiceClient(h2c, f.URL)
		ms := labelingv1connect.NewMissionServiceClient(h2c, f.URL)
		id, last := seedTasks(b, f, "bench", *benchTasks, 3)
		ctx := context.Background()
		if _, err := ds.GetDataset(ctx, withToken(&labelingv1.GetDatasetRequest{DatasetId: id, MinPosition: last}, f.Token(b, "root", auth.Admin))); err != nil {
			b.Fatal(err)
		}
		toks := make([]string, *benchLabelers)
		for i := range toks {
			toks[i] = f.Token(b, fmt.Sprintf("labeler-%d", i), auth.Labeler)
		}
		run := func(call func(tok string) error) []time.Duration {
			lat := make([]time.Duration, len(toks))
			next := make(chan int)
			var wg sync.WaitGroup
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						t := time.Now()
						if err := call(toks[i]); err != nil {
							b.Error(err)
						}
						lat[i] = time.Since(t)
					}
				}()
			}
			for i := range toks {
				next <- i
			}
			close(next)
			wg.Wait()
			return lat
		}
		base := run(func(tok string) error {
			_, err := ms.GetLabelerStats(ctx, withToken(&labelingv1.GetLabelerStatsRequest{}, tok))
			return err
		})
		lat := run(func(tok string) error {
			res, err := ms.StartMission(ctx, withToken(&labelingv1.StartMissionRequest{}, tok))
			if err == nil && len(res.Msg.Mission.Tasks) != labeling.DefaultMissionTasks {
				err = fmt.Errorf("a mission of %d tasks", len(res.Msg.Mission.Tasks))
			}
			return err
		})
		p50, p99 := percentile(lat, 0.5), percentile(lat, 0.99)
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(percentile(base, 0.5).Microseconds())/1000, "stats-p50-ms")
		b.ReportMetric(float64(p50)/float64(percentile(base, 0.5)), "p50-vs-stats")
	}
}

// BenchmarkVerify: one verification batch over labels (default 100,000:
// three a task, most agreeing), recorded in the event store; beside it,
// in the same run, the decisions alone (pure CPU), so the store's share
// shows.
//
//	go test ./api/ -run '^$' -bench Verify -benchtime 1x
func BenchmarkVerify(b *testing.B) {
	for range b.N {
		f := start(b)
		n := *benchLabels / 3
		id, _ := seedTasks(b, f, "verify", n, 3)
		due := map[string][]labeling.DueTask{}
		for i := range n {
			item := fmt.Sprintf("%s-i%d", id, i/100)
			answers := []string{"Seoul Station", "seoul station", "Seoul Statoin"}
			if i%10 == 0 {
				answers = []string{"cat", "dog", "owl"} // no agreement: wants more
			}
			t := labeling.DueTask{Task: labeling.TaskID(item, i%100), Wanted: 3}
			for k, a := range answers {
				t.Votes = append(t.Votes, labeling.Vote{Labeler: fmt.Sprintf("l%d", (i+k)%1000), Answer: a, Weight: 0.5})
			}
			due[id] = append(due[id], t)
		}
		start := time.Now()
		for _, t := range due[id] {
			labeling.DefaultAgreement.Decide(t.Task, t.Votes, t.Wanted)
		}
		pure := time.Since(start)
		svc := labeling.NewService(f.Store, nil, nil, nil)
		start = time.Now()
		decided, err := svc.Verify(context.Background(), due, labeling.DefaultAgreement, "bench")
		took := time.Since(start)
		if err != nil || decided != n {
			b.Fatalf("decided %d of %d: %v", decided, n, err)
		}
		b.ReportMetric(took.Seconds(), "batch-s")
		b.ReportMetric(float64(3*n)/took.Seconds(), "labels/s")
		b.ReportMetric(pure.Seconds(), "decide-only-s")
		b.ReportMetric(float64(pure)/float64(took), "decide-share")
	}
}

// BenchmarkPreprocess: a dataset of images (default 1,000 small pages of
// two lines) from approval to every task made, through the server's
// pipeline with real tesseract; beside it, in the same run, the same
// pages read by tesseract and cropped directly, NumCPU at a time (the
// engine's own rate), so the pipeline's overhead shows as a ratio.
//
//	go test ./api/ -run '^$' -bench Preprocess -benchtime 1x
func BenchmarkPreprocess(b *testing.B) {
	mediatest.Need(b, "tesseract", "tesseract-ocr")
	pages := make([][]byte, *benchItems)
	for i := range pages {
		pages[i] = pagetest.Render(b, []string{fmt.Sprintf("Order %04d", i), fmt.Sprintf("Zone %d Gate %d", i%17, i%5)}, 24)
	}
	for range b.N {
		// The engine alone.
		ocr := tesseract.New(tesseract.Config{})
		start := time.Now()
		next := make(chan []byte)
		var wg sync.WaitGroup
		for range runtime.NumCPU() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for img := range next {
					page, err := ocr.Read(context.Background(), img, []string{"ko", "en"})
					if err == nil {
						_, err = media.CropsPNG(img, page.Lines, 4)
					}
					if err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for _, p := range pages {
			next <- p
		}
		close(next)
		wg.Wait()
		raw := float64(len(pages)) / time.Since(start).Seconds()

		// The pipeline.
		f := labelingServer(b)
		ds := labelingv1connect.NewDatasetServiceClient(h2c, f.URL)
		acme, root := f.Token(b, "acme", auth.Enterprise), f.Token(b, "root", auth.Admin)
		ctx := context.Background()
		created, err := ds.CreateDataset(ctx, withToken(&labelingv1.CreateDatasetRequest{Name: "bench", Kind: labelingv1.Kind_KIND_OCR_IMAGES}, acme))
		if err != nil {
			b.Fatal(err)
		}
		id := created.Msg.Dataset.DatasetId
		for from := 0; from < len(pages); from += labeling.MaxFilesPerCall {
			chunk := pages[from:min(from+labeling.MaxFilesPerCall, len(pages))]
			req := &labelingv1.CreateUploadsRequest{DatasetId: id}
			var shas []string
			for _, p := range chunk {
				req.Files = append(req.Files, &labelingv1.FileToUpload{Sha256: sha(p), Size: int64(len(p)), ContentType: "image/png"})
				shas = append(shas, sha(p))
			}
			ups, err := ds.CreateUploads(ctx, withToken(req, acme))
			if err != nil {
				b.Fatal(err)
			}
			for i, u := range ups.Msg.Uploads {
				put(b, u.Url, "image/png", chunk[i])
			}
			if _, err := ds.AddItems(ctx, withToken(&labelingv1.AddItemsRequest{DatasetId: id, Sha256S: shas}, acme)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := ds.SubmitDataset(ctx, withToken(&labelingv1.SubmitDatasetRequest{DatasetId: id}, acme)); err != nil {
			b.Fatal(err)
		}
		var peak uint64
		start = time.Now()
		if _, err := ds.ReviewDataset(ctx, withToken(&labelingv1.ReviewDatasetRequest{DatasetId: id, Approve: true}, root)); err != nil {
			b.Fatal(err)
		}
		var d *labelingv1.Dataset
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			res, err := ds.GetDataset(ctx, withToken(&labelingv1.GetDatasetRequest{DatasetId: id}, acme))
			if err != nil {
				b.Fatal(err)
			}
			if d = res.Msg.Dataset; d.State == labelingv1.State_STATE_LABELING {
				break
			}
			if time.Since(start) > 30*time.Minute {
				b.Fatalf("not done after 30 minutes: %+v", d.Progress)
			}
			time.Sleep(100 * time.Millisecond) // sampling the heap, not waiting for a result
		}
		took := time.Since(start)
		if d.Progress.ItemsFailed != 0 || int(d.Progress.Tasks) < len(pages) {
			b.Fatalf("progress %+v, failed %+v", d.Progress, d.Failed)
		}
		b.ReportMetric(float64(len(pages))/took.Seconds(), "items/s")
		b.ReportMetric(raw, "engine-items/s")
		b.ReportMetric(float64(len(pages))/took.Seconds()/raw, "vs-engine")
		b.ReportMetric(float64(d.Progress.Tasks), "tasks")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	}
}
