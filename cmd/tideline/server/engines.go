package server

import (
	"os/exec"
	"path/filepath"

	"github.com/tideline/tideline/adapters/espeak"
	"github.com/tideline/tideline/adapters/fcm"
	"github.com/tideline/tideline/adapters/openai"
	"github.com/tideline/tideline/adapters/opentelemetry"
	"github.com/tideline/tideline/adapters/opusdec"
	"github.com/tideline/tideline/adapters/pocketsphinx"
	"github.com/tideline/tideline/adapters/slack"
	"github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/adapters/tesseract"
	"github.com/tideline/tideline/adapters/textrank"
	"github.com/tideline/tideline/adapters/webpush"
	"github.com/tideline/tideline/domain/media"
)

// Engines are the media engines and notifiers the server's contexts
// share, built once from the Config: local engines run as processes
// (tesseract, espeak-ng or flite, pocketsphinx) unless OpenAI-compatible
// servers are configured for speech-to-text or restructuring.
type Engines struct {
	OCR         media.OCR
	Speaker     media.Speaker
	Transcriber media.Transcriber
	Commands    media.CommandRecognizer
	Decoder     media.Decoder // Ogg Opus
	// Restructurer makes a lecture's paragraphs; RestructurerName names
	// it in the events (a new engine makes new versions).
	Restructurer     media.Restructurer
	RestructurerName string
	// Fallback restructures when Restructurer (an LLM) keeps failing.
	Fallback media.Restructurer
	// Email is nil unless Config.SMTP names a host.
	Email media.Notifier
	Slack media.Notifier
	// WebPush sends Web Push with the server's VAPID key pair
	// (Config.VAPIDKeyFile); FCM is nil unless Config.FCM names a project.
	WebPush *webpush.Notifier
	FCM     media.Notifier
}

// OpenAI configures engines reached over the OpenAI-compatible HTTP API
// (whisper servers, vLLM, llama.cpp server, Ollama, OpenAI itself).
type OpenAI struct {
	// STTURL and LLMURL are base URLs, /v1 included; empty: the local
	// engine (pocketsphinx, TextRank).
	STTURL, LLMURL     string
	STTModel, LLMModel string
	APIKey             string
}

// engineBinaries are the programs the local engines run, with the Debian
// package that has each.
var engineBinaries = []struct{ bin, pkg, what string }{
	{"tesseract", "tesseract-ocr tesseract-ocr-eng tesseract-ocr-kor", "storytime's OCR"},
	{"espeak-ng", "espeak-ng", "storytime's speech"},
	{"opusenc", "opus-tools", "Opus speech (else MP3 or WAV)"},
	{"opusdec", "opus-tools", "lectures in Ogg Opus"},
	{"pocketsphinx_continuous", "pocketsphinx pocketsphinx-en-us", "lecture transcription and voice commands"},
}

// openEngines builds m's Engines. A local engine that is not installed is
// reported here, once, with the package to install; its jobs wait.
func (m *Main) openEngines() error {
	c := &m.Config
	textRank := textrank.New(textrank.Config{})
	sphinx := pocketsphinx.New(pocketsphinx.Config{})
	e := Engines{
		OCR:         tesseract.New(tesseract.Config{}),
		Speaker:     espeak.New(espeak.Config{}),
		Transcriber: sphinx, Commands: sphinx, Decoder: opusdec.Decoder{},
		Restructurer: textRank, RestructurerName: "textrank",
		Slack: slack.New(slack.Config{AllowPrivate: c.EgressAllowPrivate}),
	}
	for _, b := range engineBinaries {
		if _, err := exec.LookPath(b.bin); err != nil {
			c.Logger.Warn("engine not installed: its jobs wait until it is", "program", b.bin, "for", b.what, "install", "apt-get install "+b.pkg)
		}
	}
	if c.OpenAI.STTURL != "" {
		stt, err := openai.New(openai.Config{BaseURL: c.OpenAI.STTURL, APIKey: c.OpenAI.APIKey, TranscriptionModel: c.OpenAI.STTModel})
		if err != nil {
			return err
		}
		e.Transcriber = stt
	}
	if c.OpenAI.LLMURL != "" {
		llm, err := openai.New(openai.Config{BaseURL: c.OpenAI.LLMURL, APIKey: c.OpenAI.APIKey, ChatModel: c.OpenAI.LLMModel, Fallback: textRank})
		if err != nil {
			return err
		}
		e.Restructurer, e.Fallback = llm, textRank
		e.RestructurerName = "llm:" + c.OpenAI.LLMModel
		if c.OpenAI.LLMModel == "" {
			e.RestructurerName = "llm"
		}
	}
	if c.SMTP.Host != "" {
		email, err := smtp.New(c.SMTP)
		if err != nil {
			return err
		}
		e.Email = email
	}
	var err error
	if e.WebPush, err = openWebPush(c); err != nil {
		return err
	}
	if c.FCM.Project != "" || c.FCM.CredentialsFile != "" {
		if e.FCM, err = fcm.New(c.FCM); err != nil {
			return err
		}
	}
	if m.tracer != nil {
		e.Email, e.Slack, e.FCM = opentelemetry.Notifier("email", e.Email), opentelemetry.Notifier("slack", e.Slack), opentelemetry.Notifier("fcm", e.FCM)
	}
	m.Engines = e
	return nil
}

// openWebPush loads (or creates) the VAPID key pair and builds the Web
// Push notifier.
func openWebPush(c *Config) (*webpush.Notifier, error) {
	path := c.VAPIDKeyFile
	if path == "" {
		path = filepath.Join(c.DataDir, "vapid.json")
	}
	keys, err := webpush.LoadOrCreateKeys(path)
	if err != nil {
		return nil, err
	}
	cfg := c.WebPush
	cfg.Keys = keys
	cfg.AllowPrivate = c.EgressAllowPrivate
	return webpush.New(cfg)
}
