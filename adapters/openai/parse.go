package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tideline/tideline/domain/media"
)

// index is a sentence index the model wrote as a number or as a string.
type index int

func (i *index) UnmarshalJSON(b []byte) error {
	var n float64
	if err := json.Unmarshal(b, &n); err == nil {
		*i = index(n)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	*i = index(n)
	return err
}

type answer struct {
	Paragraphs []struct {
		Sentences  []index  `json:"sentences"`
		Highlights []string `json:"highlights"`
	} `json:"paragraphs"`
}

// parseParagraphs reads the model's answer about slice: the first JSON
// object in it (around it may be code fences and prose) that says which
// sentences make each paragraph. The indexes must cover the slice once,
// in order (counting from 1 is taken too); highlights not found in their
// paragraph, ignoring case and ** marks, are dropped.
func parseParagraphs(content string, slice []string) ([]media.Paragraph, error) {
	objects := jsonObjects(content)
	if len(objects) == 0 {
		return nil, errors.New("no JSON object in the answer")
	}
	var last error
	for _, o := range objects {
		var a answer
		if err := json.Unmarshal([]byte(o), &a); err != nil {
			last = err
			continue
		}
		ps, err := paragraphs(a, slice)
		if err == nil {
			return ps, nil
		}
		last = err
	}
	return nil, last
}

func paragraphs(a answer, slice []string) ([]media.Paragraph, error) {
	if len(a.Paragraphs) == 0 {
		return nil, errors.New("no paragraphs")
	}
	var all []int
	for _, p := range a.Paragraphs {
		if len(p.Sentences) == 0 {
			return nil, errors.New("an empty paragraph")
		}
		for _, i := range p.Sentences {
			all = append(all, int(i))
		}
	}
	base := 0
	if len(all) > 0 && all[0] == 1 && all[len(all)-1] == len(slice) {
		base = 1 // counted from 1
	}
	for k, i := range all {
		if i-base != k {
			return nil, fmt.Errorf("sentence indexes %v do not cover %d sentences once in order", all, len(slice))
		}
	}
	if len(all) != len(slice) {
		return nil, fmt.Errorf("%d sentence indexes for %d sentences", len(all), len(slice))
	}
	var out []media.Paragraph
	at := 0
	for _, p := range a.Paragraphs {
		ss := slice[at : at+len(p.Sentences)]
		at += len(p.Sentences)
		text := strings.ToLower(strings.Join(ss, " "))
		var hs []string
		seen := map[string]bool{}
		for _, h := range p.Highlights {
			h = strings.TrimSpace(strings.ReplaceAll(h, "**", ""))
			if h == "" || seen[strings.ToLower(h)] || !strings.Contains(text, strings.ToLower(h)) {
				continue
			}
			seen[strings.ToLower(h)] = true
			hs = append(hs, h)
		}
		out = append(out, media.Paragraph{Sentences: ss, Highlights: hs})
	}
	return out, nil
}

// jsonObjects returns the JSON objects in s, in order: from each '{',
// the one JSON value that starts there, if it parses (HEARUS's
// parse_JSON, but a brace in prose or in a string does not throw it off).
func jsonObjects(s string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		if s[i] != '{' {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(s[i:]))
		var raw json.RawMessage
		if dec.Decode(&raw) == nil {
			out = append(out, string(raw))
			i += int(dec.InputOffset()) - 1
		}
	}
	return out
}
