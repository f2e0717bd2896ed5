package fcm_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tideline/tideline/adapters/fcm"
	"github.com/tideline/tideline/domain/media"
)

// fake is a token server and an FCM endpoint: FCM is a paid online
// service, so the test runs both. The token server checks the service
// account's signed assertion.
type fake struct {
	tokens, fcm *httptest.Server
	creds       string // the credentials file

	mu       sync.Mutex
	issued   int
	messages []map[string]any
	status   int    // FCM answers this instead of accepting
	answer   string // with this body
	retry    string
}

func startFake(t *testing.T) *fake {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{}
	f.tokens = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
		claims := jwt.MapClaims{}
		tok, err := jwt.ParseWithClaims(r.Form.Get("assertion"), claims, func(*jwt.Token) (any, error) { return &key.PublicKey, nil },
			jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience(f.tokens.URL+"/token"), jwt.WithIssuer("push@proj.iam.gserviceaccount.com"),
			jwt.WithExpirationRequired(), jwt.WithIssuedAt())
		if err != nil || claims["scope"] != fcm.Scope || tok.Header["kid"] != "key-1" {
			t.Errorf("token assertion: %v, claims %v, header %v", err, claims, tok.Header)
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.issued++
		n := f.issued
		f.mu.Unlock()
		fmt.Fprintf(w, `{"access_token":"tok-%d","expires_in":3599,"token_type":"Bearer"}`, n)
	}))
	t.Cleanup(f.tokens.Close)
	f.fcm = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/projects/proj/messages:send" || r.Method != http.MethodPost {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if want := fmt.Sprintf("Bearer tok-%d", f.issued); r.Header.Get("Authorization") != want {
			http.Error(w, `{"error":{"code":401,"status":"UNAUTHENTICATED"}}`, http.StatusUnauthorized)
			return
		}
		if f.status != 0 {
			if f.retry != "" {
				w.Header().Set("Retry-After", f.retry)
			}
			w.WriteHeader(f.status)
			io.WriteString(w, f.answer)
			return
		}
		var m map[string]any
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.messages = append(f.messages, m)
		fmt.Fprintf(w, `{"name":"projects/proj/messages/%d"}`, len(f.messages))
	}))
	t.Cleanup(f.fcm.Close)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := json.Marshal(fcm.Credentials{ProjectID: "proj", PrivateKeyID: "key-1", ClientEmail: "push@proj.iam.gserviceaccount.com",
		PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), TokenURI: f.tokens.URL + "/token"})
	f.creds = filepath.Join(t.TempDir(), "service-account.json")
	if err := os.WriteFile(f.creds, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fake) answerWith(status int, body, retry string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.answer, f.retry = status, body, retry
}

func (f *fake) notifier(t *testing.T) *fcm.Notifier {
	t.Helper()
	n, err := fcm.New(fcm.Config{CredentialsFile: f.creds, BaseURL: f.fcm.URL})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var msg = media.Message{To: media.Recipient{FCMToken: "dev-token-1"}, Subject: "+10 points", Text: "You labeled 10 images",
	Links: []media.Link{{Title: "Open", URL: "https://tideline.example/points"}}, Tag: "points"}

func TestSendsWithACachedToken(t *testing.T) {
	f := startFake(t)
	n := f.notifier(t)
	for range 3 {
		if err := n.Notify(t.Context(), msg); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.issued != 1 || len(f.messages) != 3 {
		t.Fatalf("%d tokens issued, %d messages; want 1 and 3", f.issued, len(f.messages))
	}
	got, _ := json.Marshal(f.messages[0])
	want := `{"message":{"android":{"collapse_key":"points"},"data":{"tag":"points","url":"https://tideline.example/points"},"notification":{"body":"You labeled 10 images","title":"+10 points"},"token":"dev-token-1"}}`
	if string(got) != want {
		t.Errorf("message\n%s\nwant\n%s", got, want)
	}
}

func TestAnswers(t *testing.T) {
	for _, c := range []struct {
		name         string
		status       int
		body, retry  string
		want         error
		retryAfter   time.Duration
		wantNotFound bool
	}{
		{"unregistered_is_not_found", http.StatusNotFound, `{"error":{"code":404,"status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`, "", media.ErrNotFound, 0, true},
		{"unregistered_as_400_is_not_found", http.StatusBadRequest, `{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"errorCode":"UNREGISTERED"}]}}`, "", media.ErrNotFound, 0, true},
		{"quota_is_unavailable", http.StatusTooManyRequests, `{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}`, "20", media.ErrUnavailable, 20 * time.Second, false},
		{"down_is_unavailable", http.StatusServiceUnavailable, `{"error":{"code":503,"status":"UNAVAILABLE"}}`, "", media.ErrUnavailable, 0, false},
		{"invalid_is_unusable", http.StatusBadRequest, `{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"errorCode":"INVALID_ARGUMENT"}]}}`, "", media.ErrUnusable, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := startFake(t)
			f.answerWith(c.status, c.body, c.retry)
			err := f.notifier(t).Notify(t.Context(), msg)
			if !errors.Is(err, c.want) || errors.Is(err, media.ErrUnusable) && c.want != media.ErrUnusable {
				t.Fatalf("err %v; want %v", err, c.want)
			}
			var rl *media.RetryLater
			if c.retryAfter != 0 && (!errors.As(err, &rl) || rl.After != c.retryAfter) {
				t.Errorf("err %v; want RetryLater %s", err, c.retryAfter)
			}
		})
	}
}

func TestNoTokenIsUnusable(t *testing.T) {
	f := startFake(t)
	if err := f.notifier(t).Notify(t.Context(), media.Message{Subject: "x"}); !errors.Is(err, media.ErrUnusable) {
		t.Errorf("err %v", err)
	}
}

func TestTokenServerDownIsUnavailable(t *testing.T) {
	f := startFake(t)
	n := f.notifier(t)
	f.tokens.Close()
	if err := n.Notify(t.Context(), msg); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("err %v", err)
	}
}

func TestRejectedTokenIsRenewed(t *testing.T) {
	f := startFake(t)
	n := f.notifier(t)
	if err := n.Notify(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.issued++ // the token server moved on: tok-1 is refused now
	f.mu.Unlock()
	if err := n.Notify(t.Context(), msg); !errors.Is(err, media.ErrUnavailable) {
		t.Fatalf("with a revoked token: %v", err)
	}
	if err := n.Notify(t.Context(), msg); err != nil {
		t.Fatalf("after renewing: %v", err)
	}
}

func TestBadCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(path, []byte(`{"project_id":"p","client_email":"a@b","private_key":"nope"}`), 0o600)
	if _, err := fcm.New(fcm.Config{CredentialsFile: path}); err == nil {
		t.Error("a key that is not PEM was accepted")
	}
}
