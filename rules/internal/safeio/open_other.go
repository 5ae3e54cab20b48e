//go:build !unix

package safeio

import "os"

func openNonBlock(path string) (*os.File, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, NotRegularError(path, info.Mode())
	}
	return os.Open(path)
}
