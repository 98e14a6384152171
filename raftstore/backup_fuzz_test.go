package raftstore

import (
	"bytes"
	"testing"
)

// FuzzReadBackupFile feeds arbitrary bytes to the backup file reader: framing, header,
// trailer, checksum, and the body decoder on its own (a fuzzer cannot forge the
// checksum, so the body is also decoded without it). Nothing may panic, and a file that
// verifies must have the lengths of its framing add up. The kept corpus holds a real
// backup of a small ledger (testdata/fuzz/FuzzReadBackupFile).
func FuzzReadBackupFile(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(backupMagic))
	f.Add([]byte(backupMagic + "\x00\x01\x00\x00\x00\x02{}" + backupTrailerMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		bf, err := ReadBackupFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if bf.bodyOff+bf.bodyLen+int64(backupTrailerSize) != int64(len(data)) || bf.bodyLen < 0 {
			t.Fatalf("framing of %d bytes: body at %d, %d bytes", len(data), bf.bodyOff, bf.bodyLen)
		}
		_ = bf.decodeBody()
		if err := bf.Verify(); err == nil && len(bf.Header.HeadHash) != 64 {
			t.Fatalf("a verified backup names head hash %q", bf.Header.HeadHash)
		}
	})
}
