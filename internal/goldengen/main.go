// Command goldengen writes the golden fixture log into testdata/golden (see package
// internal/golden). Run it only when a format changes on purpose (make golden), and say
// so in the commit: TestGolden fails on any byte that differs from what it wrote, and
// nothing in CI rewrites these files.
package main

import (
	"flag"
	"log"
	"os"
	"path/filepath"

	"github.com/chronicle-ledger/chronicle/internal/golden"
)

func main() {
	dir := flag.String("dir", "testdata/golden", "directory to write the fixture into")
	flag.Parse()
	files, err := golden.Render(golden.Script())
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range golden.Files {
		if err := os.WriteFile(filepath.Join(*dir, name), files[name], 0o644); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("wrote %s", *dir)
}
