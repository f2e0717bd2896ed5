package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/media/mediatest"
)

func TestDemoFillsEveryReadModel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	sum, err := runDemo(ctx, demoConfig{riders: 5, orders: 30, speed: 1e9, seed: 7, out: &out})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if sum.Placed != 30 || sum.Delivered == 0 || sum.Rated == 0 || sum.Dangers == 0 {
		t.Fatalf("summary = %+v\n%s", sum, out.String())
	}
	if len(sum.Top) == 0 || sum.Top[0].Steps == 0 {
		t.Fatalf("step ranking empty\n%s", out.String())
	}
	if len(sum.Alerts) == 0 || sum.OpenAlerts == 0 {
		t.Fatalf("no alert raised\n%s", out.String())
	}
	if sum.Dashboard == nil || sum.Dashboard.GetBoard().GetDeliveredToday() == 0 {
		t.Fatalf("dashboard = %v\n%s", sum.Dashboard, out.String())
	}
	for _, want := range []string{"Admin token", "[12:00]", "Day done", "Step ranking", "Alerts:"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDemoFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"--server", "http://127.0.0.1:1"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "--data") {
		t.Fatalf("--server without --data: %v", err)
	}
	if err := Run(context.Background(), []string{"--riders", "0"}, &out, &errb); err == nil {
		t.Fatal("--riders 0 accepted")
	}
}

func TestDemoAgainstRunningServer(t *testing.T) {
	m := servertest.Start(t)
	dir := m.Config.DataDir
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, []string{"--server", "http://" + m.Addr(), "--data", dir, "--riders", "3", "--orders", "12", "--speed", "1e9"}, &out, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "Embedded server") || !strings.Contains(out.String(), "12 orders placed") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// The labeling scenario runs from upload to the raffle through the API
// with real tesseract: every page becomes line tasks, the sloppy
// labeler's wrong answers are rejected, points pay for tickets, the draw
// is recomputed from its revealed seed, and the export holds every task.
func TestLabelingDemo(t *testing.T) {
	mediatest.Need(t, "tesseract", "tesseract-ocr")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	sum, err := runLabeling(ctx, demoConfig{labeling: true, pages: 4, labelers: 4, seed: 3, out: &out})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if sum.Items != 4 || sum.Duplicates != 1 || sum.Tasks != 12 || sum.Exported != 12 {
		t.Fatalf("summary %+v\n%s", sum, out.String())
	}
	if sum.Labels < 3*sum.Tasks || sum.Rejected == 0 || sum.Accepted == 0 || !sum.Verified || len(sum.Winners) != 1 || sum.Inbox == 0 {
		t.Fatalf("summary %+v\n%s", sum, out.String())
	}
}
