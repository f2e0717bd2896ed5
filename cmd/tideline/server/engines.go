package server

import (
	"github.com/tideline/tideline/adapters/slack"
	"github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/domain/media"
)

// Engines are the media engines and notifiers the server's contexts
// share, built once from the Config.
type Engines struct {
	OCR         media.OCR
	Speaker     media.Speaker
	Transcriber media.Transcriber
	Commands    media.CommandRecognizer
	// Restructurer makes a lecture's paragraphs; RestructurerName names
	// it in the events (a new engine makes new versions).
	Restructurer     media.Restructurer
	RestructurerName string
	// Fallback restructures when Restructurer (an LLM) keeps failing.
	Fallback media.Restructurer
	// Email is nil unless Config.SMTP names a host.
	Email media.Notifier
	Slack media.Notifier
}

// openEngines builds m's Engines.
func (m *Main) openEngines() error {
	c := &m.Config
	m.Engines.Slack = slack.New(slack.Config{})
	if c.SMTP.Host != "" {
		email, err := smtp.New(c.SMTP)
		if err != nil {
			return err
		}
		m.Engines.Email = email
	}
	return nil
}
