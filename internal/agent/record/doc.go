// Package record keeps the agent's customer-readable local record: what the agent
// sent to the manager and what its redaction removed first, in JSON-lines files in
// the agent's data directory, and summarises them in plain words for a time range.
//
// # Files
//
// Two streams live in <data_dir>/record (0700, files 0600):
//
//	sent-<seq>.jsonl     one line per batch the manager accepted:
//	                     {"time":…,"signal":"logs","records":120,"bytes":4567,"batches":1,"destination":"https://manager.example"}
//	removed-<seq>.jsonl  one line per signal, kind and attribute key per flush interval:
//	                     {"time":…,"signal":"logs","kind":"email","key":"user.email","count":400}
//
// A removed line never holds the removed value: only which detector, which key and
// how many. Its time is the end of the interval it adds up, so a range's edges place
// removals to within one FlushInterval. Each stream is rotated past MaxFileBytes and keeps MaxFiles files, so a
// stream never takes more than MaxFiles×MaxFileBytes on disk. Times within one file
// never go backwards (a clock stepped back starts a new file), so a reader skips a
// whole file from its first and last line alone.
//
// # Cost
//
// [Record.Sent] and [Record.Removed] only add to memory under one mutex; the lines
// are written by the flush loop once per FlushInterval (sooner when many batches
// wait). A crash loses at most the interval not yet flushed.
//
// # Reading
//
// [Summarise] streams the files for a time range and totals them; a torn or damaged
// line is skipped and counted. [Summary.WriteText] says the totals in plain words,
// and [Handler] serves the same summary over HTTP. Summarise only reads, so the
// `periscope-agent report` verb works whether the agent runs or not.
package record
