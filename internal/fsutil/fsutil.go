// Package fsutil holds the few file-system steps that make writes durable: syncing a
// directory after a rename or create, replacing a file atomically, and creating a new
// one atomically without ever replacing one.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
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

// NewFile writes a file that must not exist yet, so that its contents appear whole under
// its name or not at all, and an existing file is never replaced (unlike
// WriteFileAtomic): the data goes to a temporary file (mode 0600, for secrets) in the
// same directory, fsynced, which Commit then links to the name. Prepared before the data
// is made, it proves the directory writable first (a token must not be made whose secret
// cannot be kept). A crash before Commit leaves only a hidden .NAME.*.tmp file, which
// the next write ignores.
type NewFile struct {
	path string
	tmp  *os.File
}

// PrepareNew prepares writing path, or reports exists (and prepares nothing) when path
// exists.
func PrepareNew(path string) (f *NewFile, exists bool, err error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, true, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, false, fmt.Errorf("write %s: %w", path, err)
	}
	return &NewFile{path: path, tmp: tmp}, false, nil
}

// Commit writes data and gives it the file's name; exists reports that the name was
// taken meanwhile, and is left as it was. Discard the file afterwards either way.
func (f *NewFile) Commit(data []byte) (exists bool, err error) {
	_, werr := f.tmp.Write(data)
	if err := errors.Join(werr, f.tmp.Sync(), f.tmp.Close()); err != nil {
		return false, fmt.Errorf("write %s: %w", f.path, err)
	}
	// A link, unlike a rename, never replaces an existing file.
	if err := os.Link(f.tmp.Name(), f.path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return true, nil
		}
		return false, fmt.Errorf("write %s: %w", f.path, err)
	}
	return false, SyncDir(filepath.Dir(f.path))
}

// Discard removes the temporary file (after Commit: the data's second name).
func (f *NewFile) Discard() {
	_ = f.tmp.Close()
	_ = os.Remove(f.tmp.Name())
}

// WriteNew writes data to path (mode 0600) unless path exists, in which case it reports
// exists and leaves the file as it is; see NewFile.
func WriteNew(path string, data []byte) (exists bool, err error) {
	f, exists, err := PrepareNew(path)
	if err != nil || exists {
		return exists, err
	}
	defer f.Discard()
	return f.Commit(data)
}
