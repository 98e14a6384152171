package eventbus

import (
	"strings"
	"unicode"

	"github.com/chronicle-ledger/chronicle"
)

// Subject is the subject an event of eventType is published on:
//
//	AccountCreated        -> <prefix>.account.created
//	MoneyDeposited        -> <prefix>.account.deposited
//	MoneyWithdrawn        -> <prefix>.account.withdrawn
//
// Every event is about an account, so the second token is always "account". Any other
// CamelCase type is split into words, a leading "Account" or "Money" word is dropped
// (when more words follow), and the rest is lowercased and joined with underscores:
// AccountFrozen -> account.frozen, AccountOwnerChanged -> account.owner_changed,
// MoneyTransferred -> account.transferred, FeeCharged -> account.fee_charged,
// AccountKYCVerified -> account.kyc_verified. The three known types follow the same
// rule; they are listed explicitly so a change to the rule cannot move them.
// Characters that cannot appear in a subject token become '_', and an empty type is
// "unknown", so the result is always a valid subject under "<prefix>.>".
func Subject(prefix, eventType string) string {
	return prefix + ".account." + subjectToken(eventType)
}

var knownTokens = map[string]string{
	chronicle.EventAccountCreated: "created",
	chronicle.EventMoneyDeposited: "deposited",
	chronicle.EventMoneyWithdrawn: "withdrawn",
}

func subjectToken(eventType string) string {
	if tok, ok := knownTokens[eventType]; ok {
		return tok
	}
	words := splitCamel(eventType)
	if len(words) > 1 && (words[0] == "account" || words[0] == "money") {
		words = words[1:]
	}
	tok := strings.Join(words, "_")
	if tok == "" {
		return "unknown"
	}
	return tok
}

// splitCamel splits "AccountKYCVerified" into [account kyc verified]. Anything that is
// not a letter or digit separates words too.
func splitCamel(s string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(s)
	for i, r := range rs {
		if !(unicode.IsLetter(r) || unicode.IsDigit(r)) || r > unicode.MaxASCII {
			flush()
			continue
		}
		if unicode.IsUpper(r) && len(cur) > 0 {
			prev := cur[len(cur)-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			// "xY" starts a word; so does the last capital of a run followed by a
			// lowercase letter ("KYCVerified": the V).
			if unicode.IsLower(prev) || unicode.IsUpper(prev) && nextLower {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return words
}
