package dedupe_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/idem-dev/idem/dedupe"
	"github.com/idem-dev/idem/dedupe/dedupetest"
	"github.com/jackc/pgx/v5"
)

func TestConformance(t *testing.T) {
	var cur *storeUnderTest
	count := func(t *testing.T, id string) int { return cur.effects(t, id) }
	t.Run("sqlite", func(t *testing.T) {
		dedupetest.Run(t, dedupetest.Harness[*sql.Tx]{
			New: func(t *testing.T, cfg dedupe.Config) dedupe.OffsetStore[*sql.Tx] {
				cur = newSQLiteUnderTest(t, cfg)
				return cur.raw.(dedupe.OffsetStore[*sql.Tx])
			},
			Write: func(ctx context.Context, tx *sql.Tx, id string) error { return sqlEffects{tx}.addEffect(ctx, id) },
			Count: count,
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dedupetest.Run(t, dedupetest.Harness[pgx.Tx]{
			New: func(t *testing.T, cfg dedupe.Config) dedupe.OffsetStore[pgx.Tx] {
				cur = newPostgresUnderTest(t, cfg)
				return cur.raw.(dedupe.OffsetStore[pgx.Tx])
			},
			Write: func(ctx context.Context, tx pgx.Tx, id string) error { return pgEffects{tx}.addEffect(ctx, id) },
			Count: count,
		})
	})
}
