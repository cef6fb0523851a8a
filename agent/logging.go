package agent

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

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
