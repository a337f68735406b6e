// Package procstat reads a process's CPU time and peak memory from /proc, so the
// benchmarks can compare Periscope and its peers on the same footing.
package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CPU returns the user+system CPU seconds a process has used.
func CPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, nil // USER_HZ is 100 on Linux
}

// PeakRSS returns the process's peak resident set in KiB.
func PeakRSS(pid int) int { return statusKiB(pid, "VmHWM:") }

// RSS returns the process's current resident set in KiB.
func RSS(pid int) int { return statusKiB(pid, "VmRSS:") }

// statusKiB reads one KiB figure of /proc/PID/status (0 when unknown).
func statusKiB(pid int, field string) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == field {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

// LoadAvg returns the machine's 1, 5 and 15 minute load averages as
// /proc/loadavg has them, so a figure can say how busy the machine was.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
