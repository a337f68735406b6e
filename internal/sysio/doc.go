// Package sysio reads and writes file descriptors with raw system calls on Linux, for
// the few hot paths where a call cannot block for long: a non-blocking socket, and a
// write into the page cache.
//
// Why: Go's syscall.Read and syscall.Write tell the scheduler a call may block. The
// first such call after a process was idle wakes the runtime's monitor thread (sysmon),
// which then polls every 20 µs until the process is idle again. In the agent every OTLP
// request starts from idle, and those wake-ups were a fifth of its CPU
// (docs/benchmarks.md). syscall.RawSyscall skips that bookkeeping: the goroutine keeps
// its processor while the kernel does the work.
//
// Read and Write are the single calls. SocketIO wraps a socket's connection in a
// reader and a writer made of them, for servers that own their connections (the OTLP
// gRPC server); Listen does the same for every connection a listener accepts, for
// net/http servers. Outside Linux, SocketIO and Listen leave connections as they are.
//
// The price: should the call block after all (the kernel throttling a writer so that
// the disk can catch up), the process's other goroutines on that processor wait too,
// as they would for a store through a memory-mapped file that faults a page in.
// Callers wait for readiness through syscall.RawConn, never in these calls, so that
// deadlines and Close keep working.
//
// Built with -race, the calls go through package syscall instead, whose annotations
// tell the race detector that what one goroutine wrote to a descriptor happens before
// another reads it.
package sysio
