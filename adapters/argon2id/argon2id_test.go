package argon2id_test

import (
	"strings"
	"testing"

	"github.com/tideline/tideline/adapters/argon2id"
)

func TestHashVerify(t *testing.T) {
	var h argon2id.Hasher
	hash, err := h.Hash("tide-line river 42")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "$argon2id$v=19$m=65536,t=2,p=2$") {
		t.Fatalf("hash %q", hash)
	}
	if !h.Verify(hash, "tide-line river 42") {
		t.Fatal("the right password refused")
	}
	other, _ := h.Hash("tide-line river 42")
	if other == hash {
		t.Fatal("two hashes of one password share a salt")
	}
	for _, tc := range []struct{ name, hash, password string }{
		{"wrong_password", hash, "tide-line river 43"},
		{"malformed_hash", "$argon2id$v=19$m=1$x$y", "tide-line river 42"},
		{"other_algorithm", strings.Replace(hash, "argon2id", "argon2i", 1), "tide-line river 42"},
		{"huge_memory", strings.Replace(hash, "m=65536", "m=99999999", 1), "tide-line river 42"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if h.Verify(tc.hash, tc.password) {
				t.Fatal("accepted")
			}
		})
	}
}

// BenchmarkVerify is what bounds logins: one Argon2id verification, run
// in parallel (go test -bench Verify -cpu 2); its ns/op is the login
// cost and 1e9/(ns/op) the sustained verifications a second on the
// machine's cores.
//
//	go test ./adapters/argon2id/ -run '^$' -bench Verify -benchtime 20x -cpu 1,2
func BenchmarkVerify(b *testing.B) {
	var h argon2id.Hasher
	hash, err := h.Hash("tide-line river 42")
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !h.Verify(hash, "tide-line river 42") {
				b.Error("refused")
			}
		}
	})
}

// A hasher at a lower cost writes its cost into the hash, and the hash
// verifies with any hasher: the cost is read from it.
func TestHasherCost(t *testing.T) {
	cheap := argon2id.Hasher{Time: 1, Memory: 1024}
	h, err := cheap.Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h, "$m=1024,t=1,p=2$") {
		t.Fatalf("hash %q does not carry its cost", h)
	}
	if !(argon2id.Hasher{}).Verify(h, "correct horse") || (argon2id.Hasher{}).Verify(h, "wrong horse") {
		t.Fatal("a cheap hash does not verify as it should")
	}
	if d, _ := (argon2id.Hasher{}).Hash("x"); !strings.Contains(d, "$m=65536,t=2,p=2$") {
		t.Fatalf("default hash %q", d)
	}
}
