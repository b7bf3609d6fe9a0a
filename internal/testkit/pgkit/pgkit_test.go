package pgkit

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestSchemaIsPrivateToTheTestAndDroppedAfterIt(t *testing.T) {
	var schema string
	t.Run("user", func(t *testing.T) {
		pool, dsn := Schema(t, "pgkit_test")
		if err := pool.QueryRow(context.Background(), "SELECT current_schema()").Scan(&schema); err != nil {
			t.Fatal(err)
		}
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var viaDSN string
		if err := c.QueryRow(context.Background(), "SELECT current_schema()").Scan(&viaDSN); err != nil {
			t.Fatal(err)
		}
		if viaDSN != schema || len(schema) <= len("pgkit_test_") {
			t.Fatalf("pool in schema %q, DSN in %q", schema, viaDSN)
		}
	})
	if t.Failed() || t.Skipped() || schema == "" {
		return
	}
	c, err := pgx.Connect(context.Background(), BaseDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema).Scan(&n); err != nil || n != 0 {
		t.Fatalf("schema %s still there after its test (%d, %v)", schema, n, err)
	}
}
