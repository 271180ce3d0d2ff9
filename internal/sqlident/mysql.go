package sqlident

// QuotedMySQL returns the name quoted with backticks, for MySQL and MariaDB (whose default
// sql_mode reads double quotes as string literals). Parse admits no backtick, so the quoting
// needs no escaping.
func (t Table) QuotedMySQL() string {
	if t.Schema == "" {
		return "`" + t.Name + "`"
	}
	return "`" + t.Schema + "`.`" + t.Name + "`"
}

// QuotedNameMySQL returns only the last part quoted with backticks (for index and constraint
// names, which take no database).
func (t Table) QuotedNameMySQL() string { return "`" + t.Name + "`" }
