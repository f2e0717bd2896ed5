package openai

import (
	"reflect"
	"testing"
)

func TestJSONObjects(t *testing.T) {
	got := jsonObjects("Here \"quoted {\" prose: {\"a\": \"}{\\\"\"} then {\"b\": {\"c\": 1}} and {unclosed")
	want := []string{`{"a": "}{\""}`, `{"b": {"c": 1}}`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}
