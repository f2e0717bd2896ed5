package api

import (
	"context"
	"net"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/accounts"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	accountsmodel "github.com/tideline/tideline/projections/accounts"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/accounts/v1/accountsv1connect"
)

// publicProcedures are the only procedures of the Connect services
// served without a bearer token: how one gets a token in the first place.
var publicProcedures = map[string]bool{
	accountsv1connect.AccountServiceSignUpProcedure:  true,
	accountsv1connect.AccountServiceLoginProcedure:   true,
	accountsv1connect.AccountServiceRefreshProcedure: true,
}

// AccountsServices serves tideline.accounts.v1.AccountService over svc
// and the users list. Login and Refresh answer access tokens signed by
// the API's Tokens, valid for accounts.AccessTokenTTL.
func AccountsServices(svc *accounts.Service, users *accountsmodel.Model) []Service {
	return []Service{{Name: accountsv1connect.AccountServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return accountsv1connect.NewAccountServiceHandler(&accountsHandler{rt: rt, svc: svc, users: users}, opts)
	}}}
}

type accountsHandler struct {
	rt    *runtime
	svc   *accounts.Service
	users *accountsmodel.Model
}

func (h *accountsHandler) SignUp(ctx context.Context, req *connect.Request[accountsv1.SignUpRequest]) (*connect.Response[accountsv1.SignUpResponse], error) {
	m := req.Msg
	err := h.svc.SignUp(ctx, accounts.SignUpInput{Email: m.Email, Password: m.Password, Role: m.Role, DisplayName: m.DisplayName,
		Address: peerHost(req.Peer())})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.SignUpResponse{}), nil
}

// peerHost is the client's address without its port: the key of the
// per-address rate limits.
func peerHost(p connect.Peer) string {
	if host, _, err := net.SplitHostPort(p.Addr); err == nil {
		return host
	}
	return p.Addr
}

// session adds an access token to s.
func (h *accountsHandler) session(s accounts.Session) (*accountsv1.Session, error) {
	access, err := h.rt.Tokens.Mint(auth.Principal{Subject: s.UserID, Role: s.Role}, accounts.AccessTokenTTL)
	if err != nil {
		return nil, err
	}
	return &accountsv1.Session{AccessToken: access.Token, AccessExpiresAt: timestamppb.New(access.Expires),
		RefreshToken: s.Refresh, RefreshExpiresAt: timestamppb.New(s.RefreshExpires), UserId: s.UserID, Role: string(s.Role)}, nil
}

func (h *accountsHandler) Login(ctx context.Context, req *connect.Request[accountsv1.LoginRequest]) (*connect.Response[accountsv1.LoginResponse], error) {
	s, err := h.svc.Login(ctx, accounts.LoginInput{Email: req.Msg.Email, Password: req.Msg.Password, Code: req.Msg.TotpCode,
		Address: peerHost(req.Peer())})
	if err != nil {
		return nil, err
	}
	out, err := h.session(s)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.LoginResponse{Session: out}), nil
}

func (h *accountsHandler) Refresh(ctx context.Context, req *connect.Request[accountsv1.RefreshRequest]) (*connect.Response[accountsv1.RefreshResponse], error) {
	s, err := h.svc.Refresh(ctx, req.Msg.RefreshToken)
	if err != nil {
		return nil, err
	}
	out, err := h.session(s)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.RefreshResponse{Session: out}), nil
}

func (h *accountsHandler) Logout(ctx context.Context, req *connect.Request[accountsv1.LogoutRequest]) (*connect.Response[accountsv1.LogoutResponse], error) {
	if err := h.svc.Logout(ctx, req.Msg.RefreshToken); err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.LogoutResponse{}), nil
}

func (h *accountsHandler) EnrolTOTP(ctx context.Context, _ *connect.Request[accountsv1.EnrolTOTPRequest]) (*connect.Response[accountsv1.EnrolTOTPResponse], error) {
	secret, uri, err := h.svc.EnrolTOTP(ctx, caller(ctx))
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.EnrolTOTPResponse{OtpauthUri: uri, Secret: secret}), nil
}

func (h *accountsHandler) VerifyTOTP(ctx context.Context, req *connect.Request[accountsv1.VerifyTOTPRequest]) (*connect.Response[accountsv1.VerifyTOTPResponse], error) {
	codes, err := h.svc.VerifyTOTP(ctx, caller(ctx), req.Msg.Code)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.VerifyTOTPResponse{RecoveryCodes: codes}), nil
}

func (h *accountsHandler) DisableTOTP(ctx context.Context, req *connect.Request[accountsv1.DisableTOTPRequest]) (*connect.Response[accountsv1.DisableTOTPResponse], error) {
	if err := h.svc.DisableTOTP(ctx, caller(ctx), req.Msg.Code); err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.DisableTOTPResponse{}), nil
}

func (h *accountsHandler) ListUsers(ctx context.Context, _ *connect.Request[accountsv1.ListUsersRequest]) (*connect.Response[accountsv1.ListUsersResponse], error) {
	if err := requireRole(ctx, auth.Admin); err != nil {
		return nil, err
	}
	out := &accountsv1.ListUsersResponse{}
	for _, u := range h.users.List() {
		email, name := accounts.Forgotten, accounts.Forgotten
		if !u.Forgotten {
			var err error
			if email, err = h.svc.Reveal(ctx, u.ID, u.EmailSealed); err != nil {
				return nil, es.Wrap(es.Unavailable, "personal data keys", err)
			}
			if name, err = h.svc.Reveal(ctx, u.ID, u.NameSealed); err != nil {
				return nil, es.Wrap(es.Unavailable, "personal data keys", err)
			}
		}
		out.Users = append(out.Users, &accountsv1.User{UserId: u.ID, Role: u.Role, Disabled: u.Disabled,
			CreatedAt: timestamppb.New(u.Created), Email: email, DisplayName: name, Forgotten: u.Forgotten || email == accounts.Forgotten})
	}
	return connect.NewResponse(out), nil
}

func (h *accountsHandler) GrantRole(ctx context.Context, req *connect.Request[accountsv1.GrantRoleRequest]) (*connect.Response[accountsv1.GrantRoleResponse], error) {
	if err := h.svc.GrantRole(ctx, caller(ctx), req.Msg.UserId, req.Msg.Role); err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.GrantRoleResponse{}), nil
}

func (h *accountsHandler) DisableUser(ctx context.Context, req *connect.Request[accountsv1.DisableUserRequest]) (*connect.Response[accountsv1.DisableUserResponse], error) {
	if err := h.svc.DisableUser(ctx, caller(ctx), req.Msg.UserId); err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.DisableUserResponse{}), nil
}

func (h *accountsHandler) ForgetUser(ctx context.Context, req *connect.Request[accountsv1.ForgetUserRequest]) (*connect.Response[accountsv1.ForgetUserResponse], error) {
	if err := h.svc.ForgetUser(ctx, caller(ctx), req.Msg.UserId); err != nil {
		return nil, err
	}
	return connect.NewResponse(&accountsv1.ForgetUserResponse{}), nil
}
