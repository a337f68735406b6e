// Package opamplog adapts log/slog to the logger interface opamp-go expects, so
// the OpAMP client and server log through the component's injected logger.
package opamplog

import (
	"context"
	"fmt"
	"log/slog"
)

// Logger implements opamp-go's types.Logger on a *slog.Logger.
type Logger struct{ L *slog.Logger }

// Debugf logs at debug level.
func (l Logger) Debugf(ctx context.Context, format string, v ...any) {
	l.L.DebugContext(ctx, fmt.Sprintf(format, v...))
}

// Errorf logs at warn level: opamp-go reports expected conditions such as a
// dropped connection as errors, which are not the operator's to fix.
func (l Logger) Errorf(ctx context.Context, format string, v ...any) {
	l.L.WarnContext(ctx, fmt.Sprintf(format, v...))
}
