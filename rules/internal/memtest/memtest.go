// Package memtest measures the peak resident memory of a piece of test code by running it in
// a child process (the test binary itself) and reading VmHWM from /proc/self/status at its end.
// A fresh process is needed because a test binary's own peak covers every test before it.
package memtest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

const envVar = "ENRICHER_MEMTEST"

// PeakRSS runs fn in a child process and returns the child's peak resident set in bytes.
// The child runs the calling test again from its start, so setup before the call runs in
// both; there, PeakRSS calls for other names return 0 and the one for name runs fn,
// reports and exits. The test is
// skipped where /proc is missing. fn's error fails the test in both processes.
func PeakRSS(t *testing.T, name string, fn func() error) int64 {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc/self/status")
	}
	if raceEnabled {
		// make test runs these tests once more without -race (MEMORY_TESTS).
		t.Skip("the race detector multiplies memory use; run without -race to measure")
	}
	if os.Getenv(envVar) == t.Name()+"/"+name {
		err := fn()
		hwm, herr := vmHWM()
		if herr != nil {
			fmt.Fprintf(os.Stdout, "memtest-error: %v\n", herr)
			os.Exit(3)
		}
		if err != nil {
			fmt.Fprintf(os.Stdout, "memtest-error: %v\n", err)
			os.Exit(3)
		}
		fmt.Fprintf(os.Stdout, "memtest-hwm: %d\n", hwm)
		os.Exit(0)
	}
	if os.Getenv(envVar) != "" {
		return 0 // a child running another case
	}
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	cmd := exec.Command(os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.count=1")
	cmd.Env = append(os.Environ(), envVar+"="+t.Name()+"/"+name)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "memtest-hwm: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
		if v, ok := strings.CutPrefix(line, "memtest-error: "); ok {
			t.Fatalf("%s: %s", name, v)
		}
	}
	t.Fatalf("%s: child process: %v\n%s", name, runErr, out.String())
	return 0
}

func vmHWM() (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				break
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}
