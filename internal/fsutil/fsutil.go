// Package fsutil holds the few file-system steps that make writes durable: syncing a
// directory after a rename or create, and replacing a file atomically.
package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// SyncDir fsyncs dir, which makes a rename, create or remove of one of its entries
// durable: fsyncing the file alone does not persist its name.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// WriteFileAtomic replaces path with data so that a crash leaves either the old file or
// the new one, never a torn mix: it writes path+".tmp", fsyncs it, renames it over path
// and fsyncs the directory. A leftover .tmp from an earlier crash is overwritten.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}
