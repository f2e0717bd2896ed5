package pocketsphinx

import "strings"

// Korean phrases come romanised (Revised Romanisation: "baedal wallyo"
// for 배달 완료) and are pronounced with the English model's phones, the
// nearest of each Korean sound:
//
//	vowels      a AA   ae EH   e EH   eo AH   eu UH   i IY   o OW   u UW
//	            oe W EH   ui UH IY   wa W AA   wae W EH   we W EH   wi W IY   wo W AH
//	            ya Y AA   yae Y EH   ye Y EH   yeo Y AH   yo Y OW   yu Y UW
//	consonants  b B   ch CH   d D   g G   h HH   j JH   k K   l L   m M   n N
//	            ng NG   p P   r R   s S   t T;  kk K   pp P   ss S   tt T   jj JH
//
// Letters are read longest match first (vowels before consonants), and
// a phone twice in a row is said once ("annae" is AA N EH). Tense
// consonants (kk, pp, ...) have no English phone and take the plain one.
var (
	vowels = []struct{ roman, phones string }{
		{"yae", "Y EH"}, {"yeo", "Y AH"}, {"wae", "W EH"},
		{"ae", "EH"}, {"eo", "AH"}, {"eu", "UH"}, {"oe", "W EH"}, {"ui", "UH IY"}, {"wa", "W AA"},
		{"we", "W EH"}, {"wi", "W IY"}, {"wo", "W AH"}, {"ya", "Y AA"}, {"ye", "Y EH"}, {"yo", "Y OW"}, {"yu", "Y UW"},
		{"a", "AA"}, {"e", "EH"}, {"i", "IY"}, {"o", "OW"}, {"u", "UW"},
	}
	consonants = []struct{ roman, phones string }{
		{"ng", "NG"}, {"ch", "CH"}, {"kk", "K"}, {"pp", "P"}, {"ss", "S"}, {"tt", "T"}, {"jj", "JH"},
		{"b", "B"}, {"d", "D"}, {"g", "G"}, {"h", "HH"}, {"j", "JH"}, {"k", "K"}, {"l", "L"},
		{"m", "M"}, {"n", "N"}, {"p", "P"}, {"r", "R"}, {"s", "S"}, {"t", "T"},
	}
)

// romanised returns the phones of a romanised Korean word; ok is false
// for a word with letters romanisation does not use (f, q, v, x, z, c
// without h, digits).
func romanised(word string) (phones string, ok bool) {
	var out []string
	for rest := word; rest != ""; {
		matched := false
		for _, table := range [][]struct{ roman, phones string }{vowels, consonants} {
			for _, x := range table {
				if strings.HasPrefix(rest, x.roman) {
					for _, p := range strings.Fields(x.phones) {
						if len(out) == 0 || out[len(out)-1] != p {
							out = append(out, p)
						}
					}
					rest, matched = rest[len(x.roman):], true
					break
				}
			}
			if matched {
				break
			}
		}
		if !matched {
			return "", false
		}
	}
	return strings.Join(out, " "), true
}
