package delivery

import (
	"fmt"
	"strings"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
)

// Intents of riders' voice commands: each is the command a button sends.
const (
	IntentAccept  = "accept"
	IntentPickUp  = "pick_up"
	IntentDeliver = "deliver"
	IntentCancel  = "cancel"
)

// VoiceLangs are the languages of riders' voice commands.
var VoiceLangs = []string{"ko", "en"}

// voiceGrammars are the phrases riders say, per language. Korean phrases
// are romanised (Revised Romanization, a word per Korean word), which is
// what a recogniser with no Korean model matches against: 수락 surak,
// 픽업 pikeop, 배달 baedal, 완료 wallyo, 끝 kkeut, 취소 chwiso, 주문 jumun.
var voiceGrammars = map[string]media.Grammar{
	"en": {Lang: "en", Phrases: map[string]string{
		"accept": IntentAccept, "accept order": IntentAccept, "accept the order": IntentAccept,
		"pick up": IntentPickUp, "picked up": IntentPickUp, "pick up order": IntentPickUp,
		"deliver": IntentDeliver, "delivered": IntentDeliver, "delivery complete": IntentDeliver,
		"cancel": IntentCancel, "cancel order": IntentCancel, "cancel the order": IntentCancel,
	}},
	"ko": {Lang: "ko", Phrases: map[string]string{
		"surak": IntentAccept, "jumun surak": IntentAccept, "baedal surak": IntentAccept,
		"pikeop": IntentPickUp, "pikeop wallyo": IntentPickUp,
		"baedal wallyo": IntentDeliver, "baedal kkeut": IntentDeliver,
		"chwiso": IntentCancel, "jumun chwiso": IntentCancel, "baedal chwiso": IntentCancel,
	}},
}

// VoiceGrammar returns the command grammar of lang, or an Invalid error
// naming field.
func VoiceGrammar(field, lang string) (media.Grammar, error) {
	g, ok := voiceGrammars[lang]
	if !ok {
		return media.Grammar{}, es.Invalidf(field, "must be one of %v, got %q", VoiceLangs, lang)
	}
	return g, nil
}

// VoiceCommand returns the command that intent stands for, on orderID by
// riderID. Cancelling carries the words heard as its reason.
func VoiceCommand(intent, orderID, riderID, heard string) (Command, error) {
	switch intent {
	case IntentAccept:
		return AcceptOrder{OrderID: orderID, RiderID: riderID}, nil
	case IntentPickUp:
		return PickUpOrder{OrderID: orderID, RiderID: riderID}, nil
	case IntentDeliver:
		return DeliverOrder{OrderID: orderID, RiderID: riderID}, nil
	case IntentCancel:
		return CancelOrder{OrderID: orderID, Reason: es.Truncate(strings.ToValidUTF8("voice: "+heard, ""), MaxReasonBytes)}, nil
	case "":
		return nil, &es.Error{Kind: es.Invalid, Field: "audio", Message: fmt.Sprintf("not understood: heard %q, which is none of the commands", heard)}
	}
	return nil, fmt.Errorf("delivery: unknown voice intent %q", intent)
}
