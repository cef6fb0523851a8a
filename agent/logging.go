package agent

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// logTimeFormat stamps each log line to the millisecond: a drain, a lock or a race is read
// from the order of lines on several nodes, which whole seconds do not give.
const logTimeFormat = "2006-01-02T15:04:05.000Z07:00"

func init() { zerolog.TimeFieldFormat = logTimeFormat }

// newLogger builds the one root logger: JSON to w by default (journald keeps it), console
// format for a person at a terminal. Components get children with component=...
func newLogger(w io.Writer, format, level string) zerolog.Logger {
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	if format == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		lvl = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger()
}
