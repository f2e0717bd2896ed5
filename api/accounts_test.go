package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/pquerna/otp/totp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/argon2id"
	tljs "github.com/tideline/tideline/adapters/jetstream"
	tltotp "github.com/tideline/tideline/adapters/totp"
	"github.com/tideline/tideline/domain/es"

	"github.com/tideline/tideline/adapters/jetstream/jstest"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/accounts"
	"github.com/tideline/tideline/domain/auth"
	accountsmodel "github.com/tideline/tideline/projections/accounts"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/accounts/v1/accountsv1connect"
	rewardsv1 "github.com/tideline/tideline/schemas/gen/tideline/rewards/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/rewards/v1/rewardsv1connect"
)

const goodPassword = "tide-line river 42"

func signUp(t *testing.T, c accountsv1connect.AccountServiceClient, email string) {
	t.Helper()
	if _, err := c.SignUp(context.Background(), connect.NewRequest(&accountsv1.SignUpRequest{
		Email: email, Password: goodPassword, Role: "walker", DisplayName: "Kim Ha-neul"})); err != nil {
		t.Fatalf("sign up %s: %v", email, err)
	}
}

func login(t *testing.T, c accountsv1connect.AccountServiceClient, email, code string) *accountsv1.Session {
	t.Helper()
	res, err := c.Login(context.Background(), connect.NewRequest(&accountsv1.LoginRequest{Email: email, Password: goodPassword, TotpCode: code}))
	if err != nil {
		t.Fatalf("login %s: %v", email, err)
	}
	return res.Msg.Session
}

func wantCode(t *testing.T, err error, code connect.Code, what string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("%s: got %v, want %v", what, err, code)
	}
}

func TestAccountsEndToEnd(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := accountsv1connect.NewAccountServiceClient(h2c, f.URL)

	signUp(t, c, "  Kim@Example.COM ")
	signUp(t, c, "kim@example.com") // the same answer, nothing opened
	s := login(t, c, "kim@example.com", "")
	if s.Role != "walker" || s.UserId == "" || s.AccessToken == "" || s.RefreshToken == "" {
		t.Fatalf("session: %v", s)
	}
	if exp := time.Until(s.AccessExpiresAt.AsTime()); exp > accounts.AccessTokenTTL || exp < accounts.AccessTokenTTL-time.Minute {
		t.Fatalf("access token lives %v", exp)
	}

	rewards := rewardsv1connect.NewRewardsServiceClient(h2c, f.URL)
	if _, err := rewards.GetAccount(ctx, withToken(&rewardsv1.GetAccountRequest{}, s.AccessToken)); err != nil {
		t.Fatalf("an authenticated call with the access token: %v", err)
	}
	_, err := c.EnrolTOTP(ctx, connect.NewRequest(&accountsv1.EnrolTOTPRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "EnrolTOTP without a token")
	_, err = c.ListUsers(ctx, connect.NewRequest(&accountsv1.ListUsersRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated, "ListUsers without a token")
	_, err = c.Logout(ctx, connect.NewRequest(&accountsv1.LogoutRequest{RefreshToken: s.RefreshToken}))
	wantCode(t, err, connect.CodeUnauthenticated, "Logout without a token")

	_, wrong := c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "kim@example.com", Password: "not the password"}))
	_, unknown := c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "nobody@example.com", Password: "not the password"}))
	wantCode(t, wrong, connect.CodeUnauthenticated, "wrong password")
	if wrong.Error() != unknown.Error() {
		t.Fatalf("wrong password %q and unknown e-mail %q differ", wrong, unknown)
	}

	r1, err := c.Refresh(ctx, connect.NewRequest(&accountsv1.RefreshRequest{RefreshToken: s.RefreshToken}))
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	s2 := r1.Msg.Session
	if s2.RefreshToken == s.RefreshToken || s2.UserId != s.UserId {
		t.Fatalf("refresh did not rotate: %v", s2)
	}
	_, err = c.Refresh(ctx, connect.NewRequest(&accountsv1.RefreshRequest{RefreshToken: s.RefreshToken}))
	wantCode(t, err, connect.CodeUnauthenticated, "reusing the spent refresh token")
	_, err = c.Refresh(ctx, connect.NewRequest(&accountsv1.RefreshRequest{RefreshToken: s2.RefreshToken}))
	wantCode(t, err, connect.CodeUnauthenticated, "the family's newer token after reuse")

	s3 := login(t, c, "kim@example.com", "")
	if _, err := c.Logout(ctx, withToken(&accountsv1.LogoutRequest{RefreshToken: s3.RefreshToken}, s3.AccessToken)); err != nil {
		t.Fatalf("logout: %v", err)
	}
	_, err = c.Refresh(ctx, connect.NewRequest(&accountsv1.RefreshRequest{RefreshToken: s3.RefreshToken}))
	wantCode(t, err, connect.CodeUnauthenticated, "refresh after logout")
}

func TestAccountsBadInputAppendsNothing(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	c := accountsv1connect.NewAccountServiceClient(h2c, f.URL)
	before := f.Last(t)
	for _, tc := range []struct {
		name, field string
		req         *accountsv1.SignUpRequest
	}{
		{"bad_email", "email", &accountsv1.SignUpRequest{Email: "kim", Password: goodPassword, Role: "walker", DisplayName: "Kim"}},
		{"short_password", "password", &accountsv1.SignUpRequest{Email: "kim@example.com", Password: "short", Role: "walker", DisplayName: "Kim"}},
		{"common_password", "password", &accountsv1.SignUpRequest{Email: "kim@example.com", Password: "password123", Role: "walker", DisplayName: "Kim"}},
		{"admin_role", "role", &accountsv1.SignUpRequest{Email: "kim@example.com", Password: goodPassword, Role: "admin", DisplayName: "Kim"}},
		{"no_name", "display_name", &accountsv1.SignUpRequest{Email: "kim@example.com", Password: goodPassword, Role: "rider"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.SignUp(ctx, connect.NewRequest(tc.req))
			wantCode(t, err, connect.CodeInvalidArgument, tc.name)
			if !strings.HasPrefix(connect.CodeOf(err).String(), "invalid") || !strings.Contains(err.Error(), tc.field+":") {
				t.Fatalf("%v does not name %s", err, tc.field)
			}
		})
	}
	_, err := c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "kim@", Password: goodPassword}))
	wantCode(t, err, connect.CodeInvalidArgument, "login with a bad e-mail")
	if !strings.Contains(err.Error(), "email:") {
		t.Fatalf("%v does not name email", err)
	}
	_, err = c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "kim@example.com"}))
	wantCode(t, err, connect.CodeInvalidArgument, "login without a password")
	_, err = c.Refresh(ctx, connect.NewRequest(&accountsv1.RefreshRequest{}))
	wantCode(t, err, connect.CodeInvalidArgument, "refresh without a token")
	_, err = c.Refresh(ctx, connect.NewRequest(&accountsv1.RefreshRequest{RefreshToken: "no-dot"}))
	wantCode(t, err, connect.CodeUnauthenticated, "refresh with a malformed token")
	if after := f.Last(t); after != before {
		t.Fatalf("bad input appended %d commits", after-before)
	}
}

func TestAccountsRateLimit(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := accountsv1connect.NewAccountServiceClient(h2c, f.URL)
	var err error
	for i := range accounts.AttemptsPerAccount + 1 {
		_, err = c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "lee@example.com", Password: "guess number " + string(rune('a'+i))}))
	}
	wantCode(t, err, connect.CodeResourceExhausted, "a login past the limit")
	if !strings.Contains(err.Error(), "retry in") {
		t.Fatalf("no retry hint: %v", err)
	}
	if d := retryInfo(t, err); d <= 0 || d > accounts.AttemptWindow {
		t.Fatalf("RetryInfo.retry_delay %v", d)
	}

	for i := range accounts.SignUpsPerAddress + 1 {
		_, err = c.SignUp(ctx, connect.NewRequest(&accountsv1.SignUpRequest{Email: fmt.Sprintf("s%d@example.com", i),
			Password: goodPassword, Role: "rider", DisplayName: "S"}))
	}
	wantCode(t, err, connect.CodeResourceExhausted, "a sign-up past the limit")
}

// TestAccountsRateLimitPerAddress: one client address trying logins
// across many accounts (no account's own limit is reached) is refused
// past AttemptsPerAddress, even with the right password, and told when to
// retry. The limit keys on the connection's address: the API trusts no
// proxy header, so an X-Forwarded-For does not buy a fresh allowance,
// while another address is still served.
func TestAccountsRateLimitPerAddress(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := accountsv1connect.NewAccountServiceClient(h2c, f.URL)
	signUp(t, c, "kept@example.com")
	for i := range accounts.AttemptsPerAddress {
		_, err := c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: fmt.Sprintf("a%d@example.com", i), Password: "a wrong guess"}))
		wantCode(t, err, connect.CodeUnauthenticated, fmt.Sprintf("attempt %d of %d", i+1, accounts.AttemptsPerAddress))
	}
	right := &accountsv1.LoginRequest{Email: "kept@example.com", Password: goodPassword}
	_, err := c.Login(ctx, connect.NewRequest(right))
	wantCode(t, err, connect.CodeResourceExhausted, "the right password past the address's limit")
	m := regexp.MustCompile(`from this address: retry in (\d+) s`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("no retry hint: %v", err)
	}
	s, _ := strconv.Atoi(m[1])
	if s < 1 || s > int(accounts.AttemptWindow.Seconds()) {
		t.Fatalf("retry in %d s, want 1 to %v", s, accounts.AttemptWindow)
	}
	if got := retryInfo(t, err); got != time.Duration(s)*time.Second {
		t.Fatalf("RetryInfo.retry_delay %v, the message says %d s", got, s)
	}

	spoofed := connect.NewRequest(right)
	spoofed.Header().Set("X-Forwarded-For", "198.51.100.7")
	spoofed.Header().Set("X-Real-Ip", "198.51.100.7")
	_, err = c.Login(ctx, spoofed)
	wantCode(t, err, connect.CodeResourceExhausted, "past the limit, claiming another address in headers")

	t.Run("another_address_served", func(t *testing.T) {
		other := clientFrom(t, "127.0.0.2")
		login(t, accountsv1connect.NewAccountServiceClient(other, f.URL), right.Email, "")
	})
}

// retryInfo returns the retry delay of err's one google.rpc.RetryInfo
// detail.
func retryInfo(t *testing.T, err error) time.Duration {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("not a Connect error: %v", err)
	}
	var infos []*errdetails.RetryInfo
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			t.Fatalf("detail %s: %v", d.Type(), derr)
		}
		if ri, ok := v.(*errdetails.RetryInfo); ok {
			infos = append(infos, ri)
		}
	}
	if len(infos) != 1 {
		t.Fatalf("%d RetryInfo details in %v, want 1", len(infos), err)
	}
	return infos[0].RetryDelay.AsDuration()
}

// clientFrom is an h2c client whose connections leave from the loopback
// address ip: another client address for a server on 127.0.0.1. Linux
// routes all of 127.0.0.0/8 to the loopback; elsewhere it skips.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("no loopback address %s here: %v", ip, err)
	}
	ln.Close()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{Protocols: &p, DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func TestAccountsTOTP(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := accountsv1connect.NewAccountServiceClient(h2c, f.URL)
	signUp(t, c, "park@example.com")
	s := login(t, c, "park@example.com", "")
	enrol, err := c.EnrolTOTP(ctx, withToken(&accountsv1.EnrolTOTPRequest{}, s.AccessToken))
	if err != nil {
		t.Fatalf("enrol: %v", err)
	}
	if !strings.HasPrefix(enrol.Msg.OtpauthUri, "otpauth://totp/") || strings.Contains(enrol.Msg.OtpauthUri, "park") {
		t.Fatalf("uri %q", enrol.Msg.OtpauthUri)
	}
	code, err := totp.GenerateCode(enrol.Msg.Secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.VerifyTOTP(ctx, withToken(&accountsv1.VerifyTOTPRequest{Code: "000000x"}, s.AccessToken))
	wantCode(t, err, connect.CodeUnauthenticated, "verify with a wrong code")
	v, err := c.VerifyTOTP(ctx, withToken(&accountsv1.VerifyTOTPRequest{Code: code}, s.AccessToken))
	if err != nil || len(v.Msg.RecoveryCodes) != accounts.RecoveryCodes {
		t.Fatalf("verify: %v %v", v, err)
	}

	_, err = c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "park@example.com", Password: goodPassword}))
	wantCode(t, err, connect.CodeUnauthenticated, "login without a code")
	code, _ = totp.GenerateCode(enrol.Msg.Secret, time.Now())
	login(t, c, "park@example.com", code)
	login(t, c, "park@example.com", v.Msg.RecoveryCodes[0])
	_, err = c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "park@example.com", Password: goodPassword, TotpCode: v.Msg.RecoveryCodes[0]}))
	wantCode(t, err, connect.CodeUnauthenticated, "a spent recovery code")

	_, err = c.DisableTOTP(ctx, withToken(&accountsv1.DisableTOTPRequest{Code: "123"}, s.AccessToken))
	wantCode(t, err, connect.CodeUnauthenticated, "disable with a wrong code")
	code, _ = totp.GenerateCode(enrol.Msg.Secret, time.Now())
	if _, err := c.DisableTOTP(ctx, withToken(&accountsv1.DisableTOTPRequest{Code: code}, s.AccessToken)); err != nil {
		t.Fatalf("disable: %v", err)
	}
	login(t, c, "park@example.com", "")
}

func TestAccountsAdmin(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := accountsv1connect.NewAccountServiceClient(h2c, f.URL)
	admin := f.Token(t, "ada", auth.Admin)
	signUp(t, c, "choi@example.com")
	signUp(t, c, "jung@example.com")
	choi := login(t, c, "choi@example.com", "")
	jung := login(t, c, "jung@example.com", "")

	_, err := c.ListUsers(ctx, withToken(&accountsv1.ListUsersRequest{}, choi.AccessToken))
	wantCode(t, err, connect.CodePermissionDenied, "ListUsers by a walker")
	_, err = c.GrantRole(ctx, withToken(&accountsv1.GrantRoleRequest{UserId: choi.UserId, Role: "admin"}, choi.AccessToken))
	wantCode(t, err, connect.CodePermissionDenied, "a walker granting herself admin")
	if _, err := c.GrantRole(ctx, withToken(&accountsv1.GrantRoleRequest{UserId: choi.UserId, Role: "enterprise"}, admin)); err != nil {
		t.Fatalf("grant: %v", err)
	}
	if s := login(t, c, "choi@example.com", ""); s.Role != "enterprise" {
		t.Fatalf("role after grant: %s", s.Role)
	}
	if _, err := c.DisableUser(ctx, withToken(&accountsv1.DisableUserRequest{UserId: jung.UserId}, admin)); err != nil {
		t.Fatalf("disable: %v", err)
	}
	_, err = c.Refresh(ctx, connect.NewRequest(&accountsv1.RefreshRequest{RefreshToken: jung.RefreshToken}))
	wantCode(t, err, connect.CodeUnauthenticated, "refresh of a disabled user")
	_, err = c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "jung@example.com", Password: goodPassword}))
	wantCode(t, err, connect.CodeUnauthenticated, "login of a disabled user")
	_, err = c.GrantRole(ctx, withToken(&accountsv1.GrantRoleRequest{UserId: choi.UserId, Role: "device"}, admin))
	wantCode(t, err, connect.CodeInvalidArgument, "granting a device role")
	_, err = c.GrantRole(ctx, withToken(&accountsv1.GrantRoleRequest{UserId: "nobody", Role: "rider"}, admin))
	wantCode(t, err, connect.CodeNotFound, "granting to nobody")

	users := waitUsers(t, c, admin, func(us []*accountsv1.User) bool { return len(us) == 2 })
	for _, u := range users {
		if u.UserId == choi.UserId && (u.Email != "choi@example.com" || u.DisplayName != "Kim Ha-neul" || u.Role != "enterprise") {
			t.Fatalf("choi listed as %v", u)
		}
	}

	_, err = c.ForgetUser(ctx, withToken(&accountsv1.ForgetUserRequest{UserId: choi.UserId}, jung.AccessToken))
	wantCode(t, err, connect.CodePermissionDenied, "forgetting another user")
	if _, err := c.ForgetUser(ctx, withToken(&accountsv1.ForgetUserRequest{UserId: choi.UserId}, choi.AccessToken)); err != nil {
		t.Fatalf("forget oneself: %v", err)
	}
	waitUsers(t, c, admin, func(us []*accountsv1.User) bool {
		for _, u := range us {
			if u.UserId == choi.UserId {
				return u.Forgotten && u.Email == accounts.Forgotten && u.DisplayName == accounts.Forgotten && u.Role == "enterprise"
			}
		}
		return false
	})

	// The read model rebuilt from the events shows her forgotten.
	m := accountsmodel.New()
	for _, id := range []string{choi.UserId, jung.UserId} {
		commits, _, err := f.Store.Load(ctx, accounts.Stream(id), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, cm := range commits {
			for _, e := range cm.Events {
				m.Apply(e)
			}
		}
	}
	for _, u := range m.List() {
		if u.ID == choi.UserId && (!u.Forgotten || u.EmailSealed != nil) {
			t.Fatalf("rebuilt: %+v", u)
		}
		if u.ID == jung.UserId && (!u.Disabled || u.Forgotten) {
			t.Fatalf("rebuilt: %+v", u)
		}
	}

	// No plaintext e-mail or name in the raw events stream.
	raw := jstest.RawStream(t, f.Store)
	for _, secret := range []string{"choi@example.com", "jung@example.com", "Kim Ha-neul", "choi@", "example.com"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("%q in the raw event stream", secret)
		}
	}
	_, err = c.Login(ctx, connect.NewRequest(&accountsv1.LoginRequest{Email: "choi@example.com", Password: goodPassword}))
	wantCode(t, err, connect.CodeUnauthenticated, "login of a forgotten user")
}

func waitUsers(t *testing.T, c accountsv1connect.AccountServiceClient, admin string, ok func([]*accountsv1.User) bool) []*accountsv1.User {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := c.ListUsers(context.Background(), withToken(&accountsv1.ListUsersRequest{}, admin))
		if err != nil {
			t.Fatalf("list users: %v", err)
		}
		if ok(res.Msg.Users) {
			return res.Msg.Users
		}
		if time.Now().After(deadline) {
			t.Fatalf("users never as wanted: %v", res.Msg.Users)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAccountsPublicProcedures: of every AccountService procedure, only
// SignUp, Login and Refresh are served without a token; a token is still
// checked elsewhere (here, on another service's procedure).
func TestAccountsPublicProcedures(t *testing.T) {
	f := start(t)
	sd := accountsv1.File_tideline_accounts_v1_accounts_proto.Services().ByName("AccountService")
	public := map[string]bool{"SignUp": true, "Login": true, "Refresh": true}
	for i := range sd.Methods().Len() {
		name := string(sd.Methods().Get(i).Name())
		t.Run(name, func(t *testing.T) {
			code := rawCall(t, f.URL+"/"+accountsv1connect.AccountServiceName+"/"+name)
			if public[name] == (code == connect.CodeUnauthenticated) {
				t.Fatalf("%s without a token: %v (public %v)", name, code, public[name])
			}
		})
	}
	if code := rawCall(t, f.URL+"/"+rewardsv1connect.RewardsServiceName+"/GetAccount"); code != connect.CodeUnauthenticated {
		t.Fatalf("another service without a token: %v", code)
	}
}

// rawCall posts an empty Connect JSON message to url without a token
// and returns the call's code (0 for success).
func rawCall(t *testing.T, url string) connect.Code {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := h2c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK {
		return 0
	}
	var body struct{ Code string }
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("status %d: %v", res.StatusCode, err)
	}
	var code connect.Code
	if err := code.UnmarshalText([]byte(body.Code)); err != nil {
		t.Fatal(err)
	}
	return code
}

// Racing sign-ups of one e-mail open one account: the claim stream's
// version check lets one win.
func TestAccountsSignUpRace(t *testing.T) {
	t.Parallel()
	f := start(t)
	c := accountsv1connect.NewAccountServiceClient(h2c, f.URL)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() { signUp(t, c, "race@example.com") })
	}
	wg.Wait()
	if n := len(userCommits(t, f)); n != 1 {
		t.Fatalf("%d commits on user streams, want one sign-up", n)
	}
	waitUsers(t, c, f.Token(t, "ada", auth.Admin), func(us []*accountsv1.User) bool { return len(us) == 1 })
	login(t, c, "race@example.com", "")
}

// userCommits returns the subjects of the commits on users' streams.
func userCommits(t *testing.T, f *servertest.Server) []string {
	t.Helper()
	ctx := context.Background()
	st, err := f.Store.JetStream().Stream(ctx, f.Store.StreamName())
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if msg, err := st.GetMsg(ctx, seq); err == nil && strings.HasPrefix(msg.Subject, "ev.accounts.user.") {
			out = append(out, msg.Subject)
		}
	}
	return out
}

// failUserWrites is the event store with its first append to a user
// stream failing, as a crash between a sign-up's two commits would.
type failUserWrites struct {
	es.Store
	failed atomic.Bool
}

func (f *failUserWrites) Append(ctx context.Context, s es.StreamID, evs []proto.Message, o es.AppendOptions) (es.AppendResult, error) {
	if s.Context == "accounts" && s.Type == "user" && f.failed.CompareAndSwap(false, true) {
		return es.AppendResult{}, es.Errorf(es.Unavailable, "store down")
	}
	return f.Store.Append(ctx, s, evs, o)
}

// A sign-up that claimed its e-mail but failed before writing the user
// does not leave the e-mail taken by nobody: the next sign-up finishes it.
func TestSignUpFinishesAnOrphanedClaim(t *testing.T) {
	t.Parallel()
	f := servertest.Start(t)
	ctx := context.Background()
	svc := accountsOn(t, f, &failUserWrites{Store: f.Store})
	in := accounts.SignUpInput{Email: "orphan@example.com", Password: goodPassword, Role: "walker", DisplayName: "O", Address: "192.0.2.1"}
	if err := svc.SignUp(ctx, in); es.KindOf(err) != es.Unavailable {
		t.Fatalf("first sign-up: %v, want Unavailable", err)
	}
	if _, err := svc.Login(ctx, accounts.LoginInput{Email: in.Email, Password: goodPassword, Address: "192.0.2.1"}); es.KindOf(err) != es.Unauthenticated {
		t.Fatalf("login before the retry: %v, want Unauthenticated", err)
	}
	if err := svc.SignUp(ctx, in); err != nil {
		t.Fatalf("retried sign-up: %v", err)
	}
	if _, err := svc.Login(ctx, accounts.LoginInput{Email: in.Email, Password: goodPassword, Address: "192.0.2.1"}); err != nil {
		t.Fatalf("login after the retry: %v", err)
	}
	// Once the user exists, the e-mail is taken as before: nothing changes.
	if err := svc.SignUp(ctx, accounts.SignUpInput{Email: in.Email, Password: "another password 99", Role: "rider", DisplayName: "X", Address: "192.0.2.2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Login(ctx, accounts.LoginInput{Email: in.Email, Password: "another password 99", Address: "192.0.2.2"}); es.KindOf(err) != es.Unauthenticated {
		t.Fatalf("the second sign-up's password: %v, want Unauthenticated", err)
	}
}

// holdUserWrites is the event store with its first append to a user
// stream held until release is closed.
type holdUserWrites struct {
	es.Store
	held             atomic.Bool
	holding, release chan struct{}
}

func (h *holdUserWrites) Append(ctx context.Context, s es.StreamID, evs []proto.Message, o es.AppendOptions) (es.AppendResult, error) {
	if s.Context == "accounts" && s.Type == "user" && h.held.CompareAndSwap(false, true) {
		close(h.holding)
		<-h.release
	}
	return h.Store.Append(ctx, s, evs, o)
}

// A sign-up still writing its user while a second one for the same
// e-mail finishes the claim first is told what any taken e-mail is:
// nothing, no error; one user exists.
func TestSignUpRacingAnOrphanFinisher(t *testing.T) {
	t.Parallel()
	f := servertest.Start(t)
	ctx := context.Background()
	store := &holdUserWrites{Store: f.Store, holding: make(chan struct{}), release: make(chan struct{})}
	svc := accountsOn(t, f, store)
	in := accounts.SignUpInput{Email: "slow@example.com", Password: goodPassword, Role: "walker", DisplayName: "S", Address: "192.0.2.1"}
	first := make(chan error, 1)
	go func() { first <- svc.SignUp(ctx, in) }()
	<-store.holding
	in.Address = "192.0.2.2"
	if err := svc.SignUp(ctx, in); err != nil {
		t.Fatalf("second sign-up: %v", err)
	}
	close(store.release)
	if err := <-first; err != nil {
		t.Fatalf("first sign-up, overtaken: %v, want nil", err)
	}
	if n := len(userCommits(t, f)); n != 1 {
		t.Fatalf("%d commits on user streams, want one sign-up", n)
	}
	if _, err := svc.Login(ctx, accounts.LoginInput{Email: in.Email, Password: goodPassword, Address: "192.0.2.3"}); err != nil {
		t.Fatalf("login: %v", err)
	}
}

// accountsOn is an accounts service on f's personal data keys, writing
// through store (f's store, wrapped), hashing at argon2id's lowest cost.
func accountsOn(t *testing.T, f *servertest.Server, store es.Store) *accounts.Service {
	t.Helper()
	ctx := context.Background()
	keys, err := tljs.OpenAccountKeys(ctx, f.Store.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := accounts.NewService(ctx, store, keys, argon2id.Hasher{Time: 1, Memory: 1024}, tltotp.TOTP{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}
