package store

import (
	"context"
	"fmt"
)

func openPostgres(ctx context.Context, dsn string) (Store, error) {
	return nil, fmt.Errorf("%w: the Postgres store is not available in this build", ErrUnavailable)
}
