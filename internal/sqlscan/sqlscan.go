// Package sqlscan reads query results of database/sql that the stores share the shape of.
package sqlscan

import (
	"context"
	"database/sql"
)

// Int64s runs query on db and returns its single int64 column, in the rows' order.
func Int64s(ctx context.Context, db *sql.DB, query string, args ...any) ([]int64, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
