package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// configFlag is the flag naming the config file; the file cannot set it.
const configFlag = "config"

// applyConfigFile sets every flag of fs that the YAML (or JSON) file at
// path names and the command line did not set: the command line wins.
// A key is a flag's name (cluster-listen; cluster_listen too), or a map
// whose keys continue the name (cluster: {listen: ...}); a list is a
// comma-separated value (routes: [a, b]). A key that names no flag is an
// error, as a misspelt flag is.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	values := map[string]string{}
	if err := flatten("", doc, values); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	var unknown []string
	for name, v := range values {
		f := fs.Lookup(name)
		if f == nil || name == configFlag {
			unknown = append(unknown, name)
			continue
		}
		if set[name] {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, name, err)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return fmt.Errorf("--config %s: no such flag: %s (see 'tideline %s -h')", path, strings.Join(unknown, ", "), fs.Name())
	}
	return nil
}

// flatten turns the document's keys into flag names and its values into
// flag values.
func flatten(prefix string, v any, out map[string]string) error {
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			name := strings.ReplaceAll(k, "_", "-")
			if prefix != "" {
				name = prefix + "-" + name
			}
			if err := flatten(name, sub, out); err != nil {
				return err
			}
		}
		return nil
	case nil:
		return fmt.Errorf("%s: no value", prefix)
	}
	if prefix == "" {
		return errors.New("want a map of flag names to values")
	}
	if list, ok := v.([]any); ok {
		parts := make([]string, len(list))
		for i, e := range list {
			s, err := scalar(prefix, e)
			if err != nil {
				return err
			}
			parts[i] = s
		}
		out[prefix] = strings.Join(parts, ",")
		return nil
	}
	s, err := scalar(prefix, v)
	if err != nil {
		return err
	}
	out[prefix] = s
	return nil
}

func scalar(name string, v any) (string, error) {
	switch v.(type) {
	case string, bool, int, int64, uint64, float64:
		return fmt.Sprint(v), nil
	}
	return "", fmt.Errorf("%s: want a string, number, boolean or a list of them, got %T", name, v)
}
