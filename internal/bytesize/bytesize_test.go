package bytesize

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]uint64{
		"0": 0, "1048576": 1 << 20, "512MiB": 512 << 20, "1GiB": 1 << 30, "1.5GiB": 3 << 29,
		"500MB": 500e6, " 2 KiB ": 2048, "3K": 3072, "7B": 7, "1TB": 1e12, "4G": 4 << 30,
		"9223372036854775807": 1<<63 - 1, "9007199254740993": 1<<53 + 1, "8388607TiB": 8388607 << 40,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "-1MiB", "NaN", "lots", "1 PiB", "9e18GiB", "Inf", "0x10",
		"9223372036854775808", "8388608TiB", "18446744073709551616"} {
		if got, err := Parse(in); !errors.Is(err, ErrSize) {
			t.Errorf("Parse(%q) = %d, %v; want ErrSize", in, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"512MiB", "1.5GiB", "0", "-1", "9e18GiB", "1e-9B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err == nil && n > 1<<63-1 {
			t.Fatalf("Parse(%q) = %d: above MaxInt64", s, n)
		}
	})
}
