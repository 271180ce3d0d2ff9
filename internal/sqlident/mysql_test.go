package sqlident

import "testing"

func TestQuotedMySQL(t *testing.T) {
	for _, tt := range []struct{ in, want, name string }{
		{"outbox", "`outbox`", "`outbox`"},
		{"app.outbox", "`app`.`outbox`", "`outbox`"},
	} {
		tb, err := Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := tb.QuotedMySQL(); got != tt.want {
			t.Errorf("Parse(%q).QuotedMySQL() = %s, want %s", tt.in, got, tt.want)
		}
		if got := tb.QuotedNameMySQL(); got != tt.name {
			t.Errorf("Parse(%q).QuotedNameMySQL() = %s, want %s", tt.in, got, tt.name)
		}
		if got := tb.Derived("_dead").QuotedMySQL(); got != tt.want[:len(tt.want)-1]+"_dead`" {
			t.Errorf("Derived(_dead).QuotedMySQL() = %s", got)
		}
	}
}
