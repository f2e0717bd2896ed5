// Package media declares the ports that the media pipelines (storytime,
// lecture transcription, riders' voice commands, labeling's preprocessing)
// share: blob storage, and the engines that read images, speak text,
// transcribe speech, restructure a transcript and notify a person. It is
// part of the domain's kernel beside domain/es: contexts import it, it
// imports no context. Adapters named after their technology implement
// these ports (adapters/tesseract, adapters/espeak, adapters/pocketsphinx,
// adapters/openai, adapters/smtp, adapters/slack, adapters/objectstore);
// cmd/ picks them.
//
// Every port reports an engine that is not installed or not reachable
// with an error wrapping ErrUnavailable (the pipeline's job then waits and
// is retried; it neither fails nor vanishes), and input the engine cannot
// use (an image that is not one, audio in the wrong format) with an error
// wrapping ErrUnusable (the job fails with that reason, not retried).
package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	mediav1 "github.com/tideline/tideline/schemas/gen/tideline/media/v1"
)

// ErrUnavailable says an engine or store cannot serve now: not installed
// (the message names the package to install), not reachable, or
// overloaded. Retrying later may succeed.
var ErrUnavailable = errors.New("engine unavailable")

// ErrUnusable says the input cannot be used by the engine, whatever the
// retries: the message says why (not an image, empty audio, ...).
var ErrUnusable = errors.New("unusable input")

// ErrNotFound says a blob does not exist, or (from a Notifier) that a
// push subscription or token no longer does.
var ErrNotFound = errors.New("blob not found")

// ErrTooLarge says a blob is larger than the store allows.
var ErrTooLarge = errors.New("blob too large")

// BlobRef says where a blob lives. Events carry it, never the bytes.
type BlobRef struct {
	Bucket      string // e.g. "story"; see ValidateBlob
	Name        string // unique in its bucket; a safe token (see ValidateBlob)
	SHA256      string // lowercase hex of the content
	Size        int64
	ContentType string // e.g. "image/png", "audio/ogg"
}

// Blobs stores immutable blobs. Implementations are safe for concurrent
// use.
type Blobs interface {
	// Put stores r's content as bucket/name, reading at most limit bytes
	// (more fails with ErrTooLarge and stores nothing), and returns its
	// reference with its SHA-256 and size. A reader error stores nothing.
	// Putting an existing name replaces it (names are chosen unique).
	Put(ctx context.Context, bucket, name, contentType string, r io.Reader, limit int64) (BlobRef, error)
	// Open returns the blob's content; ErrNotFound when it does not exist.
	// The caller closes it. The reader may also be an io.Seeker (the HTTP
	// endpoint then serves Range requests); if so, seeking works anywhere
	// within the blob.
	Open(ctx context.Context, bucket, name string) (io.ReadCloser, BlobRef, error)
	// Stat returns the blob's reference without its content; ErrNotFound
	// when it does not exist.
	Stat(ctx context.Context, bucket, name string) (BlobRef, error)
}

// Bounds of ValidateBlob.
const (
	MaxBucketLen   = 64
	MaxBlobNameLen = 200
)

// ValidateBlob checks a blob's bucket and name, as every Blobs method and
// Links do, with an error wrapping ErrUnusable. A bucket is 1 to
// MaxBucketLen letters, digits, '-' or '_'; a name 1 to MaxBlobNameLen
// letters, digits, '-', '_' or '.', not starting with '.' (so neither is
// ever a path step such as ".." in a URL or a key).
func ValidateBlob(bucket, name string) error {
	if err := validToken("bucket", bucket, MaxBucketLen, "-_"); err != nil {
		return err
	}
	if err := validToken("name", name, MaxBlobNameLen, "-_."); err != nil {
		return err
	}
	if name[0] == '.' {
		return fmt.Errorf("%w: blob name %q starts with '.'", ErrUnusable, name)
	}
	return nil
}

func validToken(what, s string, max int, punct string) error {
	if s == "" || len(s) > max {
		return fmt.Errorf("%w: blob %s %q: want 1 to %d characters", ErrUnusable, what, s, max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(punct, c) >= 0) {
			return fmt.Errorf("%w: blob %s %q: character %q at byte %d; allowed: letters, digits, %q", ErrUnusable, what, s, c, i, punct)
		}
	}
	return nil
}

// Upload is what a signed upload URL lets its holder store: one blob,
// bucket/name, of one of ContentTypes (empty: any), at most MaxBytes.
type Upload struct {
	Bucket, Name string
	ContentTypes []string
	MaxBytes     int64
}

// Links issues signed, expiring URLs through which clients upload and
// download blobs straight to and from storage, not through an RPC (the
// presigned-URL pattern of S3). A URL is its own credential: whoever holds
// it may do what it says until it expires, nothing else. Safe for
// concurrent use.
type Links interface {
	UploadURL(u Upload, ttl time.Duration) (url string, expires time.Time, err error)
	DownloadURL(ref BlobRef, ttl time.Duration) (url string, expires time.Time, err error)
}

// Word is a recognised word (or line) and its box on the image, in pixels.
type Word struct {
	Text       string
	X, Y, W, H int
	Confidence float64 // 0..1
}

// Page is what OCR read on an image.
type Page struct {
	Text  string // the text in reading order, lines separated by '\n'
	Words []Word
	// Lines are the text lines in reading order, each a Word whose box
	// holds the line's words, whose Text is its words joined by single
	// spaces and whose Confidence is their mean. A line without words is
	// left out.
	Lines []Word
	Lang  string // the language(s) used, e.g. "kor+eng"
}

// OCR reads text from an image (PNG or JPEG). langs are ISO 639-1 codes
// ("en", "ko"); empty means every language the engine offers of these two.
// Bytes that are not a PNG or JPEG image, and a language the port does not
// know, fail with ErrUnusable; a known language whose engine data is not
// installed fails with ErrUnavailable. Implementations are safe for
// concurrent use.
type OCR interface {
	Read(ctx context.Context, image []byte, langs []string) (Page, error)
}

// Audio is encoded sound.
type Audio struct {
	Data        []byte
	ContentType string // "audio/ogg" (Opus), "audio/mpeg" or "audio/wav"
	Duration    time.Duration
}

// Speaker turns text into speech in lang ("en", "ko"). Empty text, text
// longer than the implementation's bound (at most 1 MiB), and another
// language fail with ErrUnusable. Implementations are safe for concurrent
// use.
type Speaker interface {
	Speak(ctx context.Context, text, lang string) (Audio, error)
}

// Segment is a stretch of transcribed speech.
type Segment struct {
	Start, End time.Duration // from the start of the audio
	Text       string
	Confidence float64 // 0..1; engines that do not say give 1
}

// Transcript is what an STT engine heard.
type Transcript struct {
	Segments []Segment
}

// Text is the transcript's segments joined with single spaces.
func (t Transcript) Text() string {
	n := 0
	for _, s := range t.Segments {
		n += len(s.Text) + 1
	}
	b := make([]byte, 0, n)
	for _, s := range t.Segments {
		if s.Text == "" {
			continue
		}
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, s.Text...)
	}
	return string(b)
}

// Confidence is the segments' mean confidence; 0 when there are none.
func (t Transcript) Confidence() float64 {
	if len(t.Segments) == 0 {
		return 0
	}
	var sum float64
	for _, s := range t.Segments {
		sum += s.Confidence
	}
	return sum / float64(len(t.Segments))
}

// SampleRate is the rate of the PCM every Transcriber takes: 16 kHz,
// mono, signed 16-bit little-endian.
const SampleRate = 16000

// Transcriber turns speech into text. pcm is SampleRate mono s16le: empty
// or odd-length pcm, and a language the engine has no model for, fail with
// ErrUnusable. Silence gives a transcript without text, not an error.
// Segments are in order, within the audio. Implementations are safe for
// concurrent use.
type Transcriber interface {
	Transcribe(ctx context.Context, pcm []byte, lang string) (Transcript, error)
}

// Decoder turns encoded audio into the PCM every Transcriber takes
// (SampleRate mono s16le) as it arrives. Safe for concurrent use.
type Decoder interface {
	// Decode starts decoding a stream of contentType (e.g. "audio/ogg",
	// Ogg Opus): write the encoded bytes to in and close it at the end;
	// read the PCM from out until io.EOF, then close out. Bytes that are
	// not that format end out with an error wrapping ErrUnusable. A type
	// it does not decode is ErrUnusable at once; a decoder that is not
	// installed, ErrUnavailable.
	Decode(ctx context.Context, contentType string) (in io.WriteCloser, out io.ReadCloser, err error)
}

// Grammar is a closed set of phrases, each mapped to what it means
// (e.g. "pick up" → "PICK_UP"), for command recognition.
type Grammar struct {
	Lang    string
	Phrases map[string]string // phrase → intent
}

// Command is a phrase recognised in a grammar.
type Command struct {
	Heard      string // what the engine heard
	Intent     string // Grammar.Phrases[Heard]; "" when rejected
	Confidence float64
}

// CommandRecognizer recognises one phrase of a grammar in speech, and
// rejects speech that is not one of them (Intent "") rather than forcing
// it onto the nearest phrase; silence is rejected too. pcm is as for
// Transcriber; a grammar without phrases, or with a phrase the engine
// cannot pronounce, fails with ErrUnusable. Implementations are safe for
// concurrent use.
type CommandRecognizer interface {
	Recognize(ctx context.Context, pcm []byte, g Grammar) (Command, error)
}

// Paragraph is a run of sentences with the words that matter in it.
type Paragraph struct {
	Sentences  []string
	Highlights []string // words or short phrases found in Sentences
}

// Restructurer groups a transcript's sentences into paragraphs and picks
// their key words. The paragraphs hold the sentences given, each once, in
// their order and unchanged (a transcript's times stay attached to them);
// no sentences give no paragraphs. Implementations are safe for
// concurrent use.
type Restructurer interface {
	Restructure(ctx context.Context, sentences []string, lang string) ([]Paragraph, error)
}

// Message is a notification to a person.
type Message struct {
	To      Recipient
	Subject string
	Text    string
	Links   []Link
	// Tag groups push notifications: a newer one with the same tag
	// replaces the older on the device (Web Push Topic, FCM tag); other
	// channels ignore it. Letters, digits, '-' and '_', at most 32.
	Tag string
}

// Link is a titled URL in a Message.
type Link struct {
	Title, URL string
}

// Recipient says where a person is reached; a Notifier uses the field it
// knows (e-mail Email, Slack SlackWebhook, Web Push WebPush, FCM
// FCMToken), ignores the others, and fails with ErrUnusable when its own
// is empty. A push service that says a subscription or token no longer
// exists gives an error wrapping ErrNotFound: stop sending to it.
type Recipient struct {
	Email        string
	SlackWebhook string
	WebPush      *WebPushSubscription
	FCMToken     string
}

// WebPushSubscription is a browser's PushSubscription (its JSON form):
// the push service's endpoint URL and the keys that encrypt to it, both
// base64url.
type WebPushSubscription struct {
	Endpoint string
	P256dh   string
	Auth     string
}

// Notifier delivers a Message. A nil error means the channel accepted it.
type Notifier interface {
	Notify(ctx context.Context, m Message) error
}

// RefToProto returns the event form of a blob reference.
func RefToProto(b BlobRef) *mediav1.BlobRef {
	return &mediav1.BlobRef{Bucket: b.Bucket, Name: b.Name, Sha256: b.SHA256, Size: b.Size, ContentType: b.ContentType}
}

// RefFromProto is the inverse of RefToProto; nil gives the zero ref.
func RefFromProto(b *mediav1.BlobRef) BlobRef {
	return BlobRef{Bucket: b.GetBucket(), Name: b.GetName(), SHA256: b.GetSha256(), Size: b.GetSize(), ContentType: b.GetContentType()}
}

// RetryLater is an ErrUnavailable whose engine said when to try again
// (an HTTP Retry-After): errors.Is(err, ErrUnavailable) holds, and a
// caller that finds one with errors.As waits After before retrying.
type RetryLater struct {
	After time.Duration
	Err   error // what the engine said
}

func (e *RetryLater) Error() string { return fmt.Sprintf("%v (retry after %s)", e.Err, e.After) }

func (e *RetryLater) Unwrap() []error { return []error{ErrUnavailable, e.Err} }
