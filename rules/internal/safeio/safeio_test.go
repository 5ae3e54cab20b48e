//go:build unix

package safeio

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		limit      int64
		want       string
		is         error
	}{
		{"regular", small, 5, "", nil},
		{"too large", small, 4, small + ": too large: 5 B, more than the 4 B limit", ErrTooLarge},
		{"folder", dir, 10, dir + ": not a regular file (a folder)", ErrNotRegular},
		{"named pipe", fifo, 10, fifo + ": not a regular file (a named pipe)", ErrNotRegular},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan struct{})
			var data []byte
			var err error
			go func() { data, err = ReadFile(tc.path, tc.limit); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("ReadFile blocked")
			}
			if tc.want == "" {
				if err != nil || string(data) != "hello" {
					t.Fatalf("got %q, %v", data, err)
				}
				return
			}
			if err == nil || err.Error() != tc.want || !errors.Is(err, tc.is) {
				t.Fatalf("error\n got: %v\nwant: %s", err, tc.want)
			}
		})
	}
}

func TestLimitReader(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int64
		ok    bool
	}{{"", 0, true}, {"abc", 3, true}, {"abcd", 3, false}, {strings.Repeat("x", 100000), 99999, false}} {
		var out bytes.Buffer
		_, err := out.ReadFrom(LimitReader("in", strings.NewReader(tc.in), tc.limit))
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrTooLarge)) {
			t.Errorf("%d bytes, limit %d: %v", len(tc.in), tc.limit, err)
		}
		if tc.ok && out.String() != tc.in {
			t.Errorf("read %q", out.String())
		}
		if int64(out.Len()) > tc.limit {
			t.Errorf("read %d bytes past the limit %d", out.Len(), tc.limit)
		}
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 4 << 20: "4 MiB", 3 << 30: "3 GiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %s, want %s", n, got, want)
		}
	}
}
