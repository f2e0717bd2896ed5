package server

import (
	"context"

	"github.com/tideline/tideline/adapters/totp"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/accounts"
	"github.com/tideline/tideline/projections"
	accountsmodel "github.com/tideline/tideline/projections/accounts"
)

// accountsModule wires accounts: sign-up and login with argon2id
// passwords and TOTP, personal data sealed with Host.PersonalKeys, and
// the users list.
func accountsModule(ctx context.Context, h *Host) error {
	var svc *accounts.Service
	err := h.Provision(ctx, func(ctx context.Context) (err error) {
		svc, err = accounts.NewService(ctx, h.Store, h.PersonalKeys, h.Config.PasswordHashing, totp.TOTP{}, nil)
		return err
	})
	if err != nil {
		return err
	}
	users := accountsmodel.New()
	feed := h.Runner(users)
	h.Past(feed, func() projections.Projection { return accountsmodel.New() }, nil)
	h.Serve(api.AccountsServices(svc, users)...)
	return nil
}
