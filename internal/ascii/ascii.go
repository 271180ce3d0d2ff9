// Package ascii compares header names the way HTTP and the brokers' header conventions do:
// case-insensitively in ASCII only.
package ascii

// EqualFold reports whether a and b are equal ignoring ASCII case. Unlike strings.EqualFold
// it folds no other letters: "K" (U+212A KELVIN SIGN) does not equal "k".
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
