package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestServeRejectsBadTracingFlags(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--trace-sample", "1.5"}, "--trace-sample"},
		{[]string{"--trace-sample", "-1"}, "--trace-sample"},
		{[]string{"--otlp-endpoint", "grpc://collector:4317"}, "otlp endpoint"},
		{[]string{"--otlp-endpoint", "localhost:4318"}, "otlp endpoint"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"serve", "--data", dir, "--listen", "127.0.0.1:0"}, tc.args...), &out, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
}
