// Package lines is how a benchmark's child process reports to its parent:
// one event a line on stdout, written by one goroutine so that many agents
// may report at once without interleaving.
package lines

import (
	"bufio"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// Start writes every string sent on out to w as a line, flushing whenever
// nothing more is waiting. Close out, then call wait, to write the rest.
func Start(w io.Writer) (out chan string, wait func()) {
	out = make(chan string, 1<<16)
	flushed := make(chan struct{})
	go func() {
		bw := bufio.NewWriterSize(w, 1<<16)
		for s := range out {
			bw.WriteString(s)
			bw.WriteByte('\n')
			if len(out) == 0 {
				bw.Flush()
			}
		}
		bw.Flush()
		close(flushed)
	}()
	return out, func() { <-flushed }
}

// Progress sends "P <connected> <failed>" on out every five seconds until
// the returned function is called.
func Progress(out chan<- string, connected, failed *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				out <- fmt.Sprintf("P %d %d", connected.Load(), failed.Load())
			}
		}
	}()
	return func() { close(done) }
}
