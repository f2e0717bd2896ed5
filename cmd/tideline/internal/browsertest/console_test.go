package browsertest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/pquerna/otp/totp"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/tideline/tideline/cmd/tideline/internal/demo"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/internal/pages"
	"github.com/tideline/tideline/internal/poll"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/accounts/v1/accountsv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
)

// chromium returns the browser's path, skipping (failing under CI) when
// it is not installed.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("TIDELINE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not installed (Debian: apt-get install chromium); CI must run the browser tests")
	}
	t.Skip("chromium not installed (Debian: apt-get install chromium)")
	return ""
}

// engines says whether storytime's engines (tesseract, espeak-ng) are
// here; under CI they must be.
func engines(t *testing.T) bool {
	for _, e := range []string{"tesseract", "espeak-ng"} {
		if _, err := exec.LookPath(e); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not installed; CI must run the storytime step", e)
			}
			t.Logf("%s not installed: the storytime step is left out", e)
			return false
		}
	}
	return true
}

// artifacts is the folder screenshots go to.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TIDELINE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "tideline-artifacts")
	}
	dir = filepath.Join(dir, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts a headless Chromium (flags that keep it off the
// network it cannot reach) and returns its context.
func browser(t *testing.T, path string, limit time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(bctx, limit)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	if err := chromedp.Do(bctx); err != nil { // starts the browser (bound to bctx, not to the timeout)
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { // what the page showed when the test failed
		if t.Failed() {
			sctx, cancel := context.WithTimeout(bctx, 10*time.Second)
			defer cancel()
			if png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)); err == nil {
				p := filepath.Join(artifacts(t), "failure.png")
				_ = os.WriteFile(p, png, 0o644)
				t.Logf("the page at the failure: %s", p)
			}
		}
	})
	return ctx
}

// until waits (bounded) for a JavaScript expression to be true.
func until(what, js string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))(ctx, tg); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		return nil
	})
}

// shots saves a screenshot of the current page at desktop and phone width.
func shots(dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for _, v := range []struct {
			suffix string
			w, h   int64
		}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
			if _, err := chromedp.EmulateViewport(v.w, v.h)(ctx, tg); err != nil {
				return err
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-"+v.suffix+".png"), png, 0o644); err != nil {
				return err
			}
		}
		_, err := chromedp.EmulateViewport(1280, 900)(ctx, tg)
		return err
	})
}

// press focuses the element and activates it, as Enter or Space on a
// focused button does (the mouse's coordinates are not involved).
func press(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := chromedp.WaitVisible(chromedp.CSS(sel))(ctx, tg); err != nil {
			return err
		}
		_, err := chromedp.Evaluate[bool](fmt.Sprintf(`(e => { e.focus(); e.click(); return true })(document.querySelector(%q))`, sel))(ctx, tg)
		return err
	})
}

func stat(id string) string {
	return fmt.Sprintf(`Number((document.querySelector('[data-stat=%s]')?.textContent ?? '').replace(/\D/g, '') || '-1')`, id)
}

func TestConsole(t *testing.T) {
	path := chromium(t)
	s := servertest.Start(t)
	dir := artifacts(t)
	ctx := browser(t, path, 120*time.Second)
	operator := s.Token(t, "root", auth.Admin)
	users := accountsv1connect.NewAccountServiceClient(http.DefaultClient, s.URL)
	const email, password = "Mina.Kim@Example.com", "tideline-console-7"
	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }

	// Sign up in the page, as a walker.
	err := chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`form[data-form=login]`)),
		shots(dir, "login"),
		press(`[data-tab=signup]`),
		chromedp.WaitVisible(chromedp.CSS(`form[data-form=signup]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.SendKeys(chromedp.CSS(`input[name=display_name]`), "김민아"),
		shots(dir, "signup"),
		press(`button[type=submit]`),
		until("sign-up confirmed", `document.querySelector('.state.ok') !== null`),
	)
	if err != nil {
		t.Fatal(err)
	}
	phase("signed up")
	// An operator makes her an admin (sign-up grants walker, rider or labeler only).
	// The users list is a read model: it has the sign-up a moment later.
	var list *connect.Response[accountsv1.ListUsersResponse]
	poll.Until(t, 10*time.Second, "the sign-up in the users list", func() bool {
		list, err = users.ListUsers(ctx, bearer(&accountsv1.ListUsersRequest{}, operator))
		if err != nil {
			t.Fatalf("list users: %v", err)
		}
		return len(list.Msg.Users) > 0
	})
	if len(list.Msg.Users) != 1 || list.Msg.Users[0].Email != "mina.kim@example.com" {
		t.Fatalf("users after sign-up: %v", list.Msg.Users)
	}
	mina := list.Msg.Users[0].UserId
	if _, err := users.GrantRole(ctx, bearer(&accountsv1.GrantRoleRequest{UserId: mina, Role: "admin"}, operator)); err != nil {
		t.Fatal(err)
	}

	// Log in from the keyboard alone (the e-mail is kept from the
	// sign-up): Tab moves from the e-mail to the password, and Enter
	// there logs in. The admin's first page is the live dashboard, empty
	// so far.
	err = chromedp.Do(ctx,
		chromedp.Focus(chromedp.CSS(`input[name=email]`)),
		chromedp.KeyEvent(kb.Tab),
		until("Tab from the e-mail to the password", `document.activeElement?.name === 'password'`),
		chromedp.KeyEvent(password),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=dashboard]`)),
		until("the live dashboard", stat("today_orders")+` === 0 && document.querySelector('.dot.on') !== null`),
		shots(dir, "dashboard-empty"),
	)
	if err != nil {
		t.Fatal(err)
	}

	phase("logged in, empty dashboard live")
	// A small demo day: the figures change without a reload.
	done := make(chan error, 1)
	go func() {
		done <- demo.Run(t.Context(), []string{"--server", s.URL, "--data", s.Main.Config.DataDir, "--riders", "6", "--orders", "40", "--speed", "86400"}, io.Discard, io.Discard)
	}()
	if err := chromedp.Do(ctx, until("today's orders counted live", stat("today_orders")+` > 0`)); err != nil {
		t.Fatal(err)
	}
	position, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`.grid[data-position]`), "data-position"))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("demo: %v", err)
	}
	err = chromedp.Do(ctx,
		until("the whole day on the board", stat("today_orders")+` === 40`),
		until("riders ranked", `document.querySelectorAll('[data-card=ranking] tbody tr').length > 0`),
		until("the danger map drawn", `document.querySelectorAll('.map path.leaflet-interactive').length > 0`),
		shots(dir, "dashboard"),
	)
	if err != nil {
		t.Fatalf("%v (first live position %s)", err, position.Value)
	}

	phase("dashboard live through the demo day")
	// Acknowledge the first open alert, in the page.
	safety := safetyv1connect.NewSafetyServiceClient(http.DefaultClient, s.URL)
	open, err := safety.ListAlerts(ctx, bearer(&safetyv1.ListAlertsRequest{OpenOnly: true, MinPosition: s.Last(t)}, operator))
	if err != nil || open.Msg.Total == 0 {
		t.Fatalf("open alerts after the demo: %v, %v", open, err)
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/console/#/alerts"),
		until("alerts listed", `document.querySelector('table[data-alerts] tbody tr button') !== null`),
		shots(dir, "alerts"),
	)
	if err != nil {
		t.Fatal(err)
	}
	row, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(`table[data-alerts] tbody tr`), "data-alert"))
	if err != nil {
		t.Fatal(err)
	}
	first := row.Value
	err = chromedp.Do(ctx,
		press(`table[data-alerts] tbody tr button`),
		until("the acknowledged alert leaves the open list", fmt.Sprintf(`document.querySelector('tr[data-alert="%s"]') === null`, first)),
	)
	if err != nil {
		t.Fatal(err)
	}
	all, err := safety.ListAlerts(ctx, bearer(&safetyv1.ListAlertsRequest{Limit: 1000, MinPosition: s.Last(t)}, operator))
	if err != nil {
		t.Fatal(err)
	}
	acked := ""
	for _, a := range all.Msg.Alerts {
		if a.RaisedV2.AlertId == first && a.Acknowledged != nil {
			acked = a.Acknowledged.By
		}
	}
	if acked != "admin:"+mina {
		t.Fatalf("alert %s acknowledged by %q, want admin:%s", first, acked, mina)
	}

	phase("alert acknowledged")

	// Storytime: a page photo uploaded in the page, its stages live, the
	// audio playable (tesseract and espeak-ng run for real).
	if engines(t) {
		page, err := pages.Render(goregular.TTF, []string{"The little fox ran home", "before the rain came."}, 40)
		if err != nil {
			t.Fatal(err)
		}
		photo := filepath.Join(t.TempDir(), "page.png")
		if err := os.WriteFile(photo, page, 0o644); err != nil {
			t.Fatal(err)
		}
		err = chromedp.Do(ctx,
			chromedp.Navigate(s.URL+"/console/#/story"),
			chromedp.WaitVisible(chromedp.CSS(`form[data-story-form] input[type=file]`)),
			chromedp.SetUploadFiles(chromedp.CSS(`form[data-story-form] input[type=file]`), []string{photo}),
			until("the photo chosen", `!document.querySelector('form[data-story-form] button[type=submit]').disabled`),
			press(`form[data-story-form] button[type=submit]`),
			until("the story read and spoken", `document.querySelector('[data-story-text]')?.textContent.includes('fox') && document.querySelector('[data-story-audio]') !== null`),
			until("its audio loaded", `document.querySelector('[data-story-audio]').readyState >= 1 && document.querySelector('[data-story-audio]').duration > 1`),
			shots(dir, "story-done"),
		)
		if err != nil {
			t.Fatal(err)
		}
		phase("a story read aloud")
	}
	// Every other page, in English and in Korean.
	for _, page := range []string{"steps", "devices", "story", "datasets", "users", "account"} {
		err := chromedp.Do(ctx,
			chromedp.Navigate(s.URL+"/console/#/"+page),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`main[data-page=%s]`, page))),
			until(page+" loaded", `document.querySelector('.state.loading') === null`),
			shots(dir, page),
		)
		if err != nil {
			t.Fatalf("%s: %v", page, err)
		}
	}
	err = chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/console/#/dashboard"),
		press(`[data-action=lang]`),
		until("Korean labels", `document.documentElement.lang === 'ko' && document.body.textContent.includes('대시보드')`),
		until("the dashboard in Korean", stat("today_orders")+` === 40`),
		shots(dir, "dashboard-ko"),
		press(`[data-action=lang]`),
		until("English labels", `document.documentElement.lang === 'en' && document.body.textContent.includes('Dashboard')`),
	)
	if err != nil {
		t.Fatal(err)
	}

	phase("pages shot, Korean")
	// Two-factor log-in: turn it on, log out, log in with a recovery code.
	err = chromedp.Do(ctx,
		chromedp.Navigate(s.URL+"/console/#/account"),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=account]`)),
		press(`[data-action=totp-on]`),
		chromedp.WaitVisible(chromedp.CSS(`[data-secret]`)),
	)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`[data-secret]`)))
	if err != nil {
		t.Fatal(err)
	}
	code, err := totp.GenerateCode(strings.TrimSpace(secret), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name=code]`), code),
		press(`[data-action=totp-confirm]`),
		until("recovery codes shown", `document.querySelectorAll('.codes code').length > 0`),
		shots(dir, "account-totp"),
	)
	if err != nil {
		t.Fatal(err)
	}
	codes, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('.codes code')].map(c => c.textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	err = chromedp.Do(ctx,
		press(`[data-action=logout]`),
		chromedp.WaitVisible(chromedp.CSS(`form[data-form=login]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=email]`), email),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		press(`button[type=submit]`),
		chromedp.WaitVisible(chromedp.CSS(`input[name=totp]`)),
		shots(dir, "login-totp"),
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) == 0 {
		t.Fatal("no recovery codes")
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.CSS(`input[name=totp]`), codes[0]),
		press(`button[type=submit]`),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=account]`)), // back where she logged out
	)
	if err != nil {
		t.Fatal(err)
	}
	phase("logged in with a recovery code")

	// Reloads do not pile up live streams: each page's stream ends with
	// it, or the browser's six connections per server would leave the
	// seventh page waiting for one (it waited a minute once).
	for i := range 8 {
		err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("%s/console/?reload=%d#/dashboard", s.URL, i)),
			until(fmt.Sprintf("reload %d live", i+1), `document.querySelector('.dot.on') !== null`))
		if err != nil {
			t.Fatal(err)
		}
	}
	phase("eight reloads, each live")
	t.Logf("screenshots in %s", dir)
}

func bearer[T any](m *T, tok string) *connect.Request[T] {
	r := connect.NewRequest(m)
	r.Header().Set("Authorization", "Bearer "+tok)
	return r
}
