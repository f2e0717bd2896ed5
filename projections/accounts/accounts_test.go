package accounts_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/accounts"
	"github.com/tideline/tideline/domain/es"
	accountsmodel "github.com/tideline/tideline/projections/accounts"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
)

func TestForgottenSurvivesSnapshot(t *testing.T) {
	m := accountsmodel.New()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seq := uint64(0)
	apply := func(user string, d proto.Message) {
		seq++
		m.Apply(es.Event{Data: d, Stream: accounts.Stream(user), Position: es.Position{Seq: seq}})
	}
	apply("u1", &accountsv1.UserSignedUp{UserId: "u1", Role: "walker", EmailSealed: []byte("sealed"), CreatedAt: timestamppb.New(t0)})
	apply("u2", &accountsv1.UserSignedUp{UserId: "u2", Role: "rider", EmailSealed: []byte("sealed"), CreatedAt: timestamppb.New(t0.Add(time.Second))})
	apply("u1", &accountsv1.RoleGranted{Role: "enterprise"})
	apply("u1", &accountsv1.UserForgotten{})
	apply("u2", &accountsv1.UserDisabled{})
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := accountsmodel.New()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	got := r.List()
	if len(got) != 2 || r.Position() != seq {
		t.Fatalf("restored %d users at %d", len(got), r.Position())
	}
	if u := got[0]; u.ID != "u1" || u.Role != "enterprise" || !u.Forgotten || u.EmailSealed != nil {
		t.Fatalf("u1: %+v", u)
	}
	if u := got[1]; u.ID != "u2" || !u.Disabled || u.Forgotten {
		t.Fatalf("u2: %+v", u)
	}
}
