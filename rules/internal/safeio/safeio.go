// Package safeio opens and reads input files that may be hostile: anything that is not a
// regular file (a folder, a named pipe, a device, a socket) is refused with an error naming
// the path, and reads are bounded in size.
//
// On Unix a file is opened with O_NONBLOCK and checked with fstat on the open descriptor, so
// a named pipe with no writer cannot block the open and a file swapped for a pipe after a
// stat is still refused. Elsewhere the path is checked with stat before it is opened.
package safeio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrNotRegular is wrapped by the error for a path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by the error for input over its size limit.
var ErrTooLarge = errors.New("too large")

// NotRegularError names the path and what it is instead of a regular file.
func NotRegularError(path string, mode fs.FileMode) error {
	return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, ModeName(mode))
}

// ModeName says in words what kind of file mode describes: "folder", "named pipe", ...
func ModeName(mode fs.FileMode) string {
	switch {
	case mode.IsDir():
		return "a folder"
	case mode&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case mode&fs.ModeSocket != 0:
		return "a socket"
	case mode&fs.ModeCharDevice != 0:
		return "a character device"
	case mode&fs.ModeDevice != 0:
		return "a device"
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode.IsRegular():
		return "a regular file"
	}
	return "an irregular file"
}

// Size formats a byte count for messages: "512 B", "16 KiB", "3.5 MiB".
func Size(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return trim(float64(n)/(1<<10)) + " KiB"
	case n < 1<<30:
		return trim(float64(n)/(1<<20)) + " MiB"
	}
	return trim(float64(n)/(1<<30)) + " GiB"
}

func trim(f float64) string {
	s := fmt.Sprintf("%.1f", f)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return s
}

// TooLargeError names the path, its size (when known, else -1) and the limit.
func TooLargeError(path string, size, limit int64) error {
	if size < 0 {
		return fmt.Errorf("%s: %w: more than the %s limit", path, ErrTooLarge, Size(limit))
	}
	return fmt.Errorf("%s: %w: %s, more than the %s limit", path, ErrTooLarge, Size(size), Size(limit))
}

// Open opens a regular file for reading; see the package comment.
func Open(path string) (*os.File, fs.FileInfo, error) {
	f, err := openNonBlock(path)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, nil, NotRegularError(path, info.Mode())
	}
	return f, info, nil
}

// ReadFile reads a regular file of at most limit bytes.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, info, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info.Size() > limit {
		return nil, TooLargeError(path, info.Size(), limit)
	}
	return ReadAll(path, f, limit, info.Size())
}

// ReadAll reads r to the end, refusing more than limit bytes; sizeHint (or 0) sizes the buffer.
func ReadAll(name string, r io.Reader, limit, sizeHint int64) ([]byte, error) {
	buf := make([]byte, 0, min(max(sizeHint, 512), limit)+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, TooLargeError(name, -1, limit)
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	}
}

// LimitReader is an io.Reader that fails with a TooLargeError naming name once more than
// limit bytes have been read, instead of ending quietly as io.LimitReader does.
func LimitReader(name string, r io.Reader, limit int64) io.Reader {
	return &limitReader{name: name, r: r, left: limit, limit: limit}
}

type limitReader struct {
	name        string
	r           io.Reader
	left, limit int64 // bytes still allowed, and the limit
}

func (l *limitReader) Read(p []byte) (int, error) {
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	if int64(n) > l.left {
		n, l.left = int(l.left), 0
		return n, TooLargeError(l.name, -1, l.limit)
	}
	l.left -= int64(n)
	return n, err
}
