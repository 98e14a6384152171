// Command currencygen writes currency_table.go, the ISO 4217 table of package chronicle,
// from the CLDR data in golang.org/x/text/currency plus the ISO corrections below.
//
// The output is checked in, so the currencies and exponents the state machine accepts
// change only when someone regenerates and commits the table, never with a dependency
// bump: two nodes built against different x/text versions still agree on every amount.
// CI never runs it. From the repository root:
//
//	make currencies   # go run ./internal/currencygen -out currency_table.go
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/text/currency"
)

const textModule = "golang.org/x/text"

func main() {
	log.SetFlags(0)
	log.SetPrefix("currencygen: ")
	out := flag.String("out", "currency_table.go", "file to write")
	date := flag.String("date", time.Now().UTC().Format(time.DateOnly), "generation date recorded in the header (YYYY-MM-DD)")
	flag.Parse()
	if flag.NArg() != 0 {
		log.Fatalf("unexpected arguments %q", flag.Args())
	}
	if _, err := time.Parse(time.DateOnly, *date); err != nil {
		log.Fatalf("-date: %v", err)
	}
	version, err := textVersion()
	if err != nil {
		log.Fatal(err)
	}
	table, fixes, err := buildTable()
	if err != nil {
		log.Fatal(err)
	}
	src, err := render(table, fixes, version, *date)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*out, src, 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s: %d currencies, %d ISO corrections (x/text %s, CLDR %s)",
		*out, len(table), len(fixes), version, currency.CLDRVersion)
}

// entry is one row of the table. The generator does not import package chronicle, so
// that it still builds when currency_table.go is missing or broken.
type entry struct {
	Code     string
	Exponent int
}

// fix records an ISO correction as applied: CLDR's digits and the ISO minor unit used.
type fix struct {
	Code      string
	CLDR, ISO int
}

// buildTable computes the table, sorted by code, and the corrections it applied.
//
// What is in it:
//   - every unit CLDR records as currently in use in some region, tender or not
//     (currency.Query with NonTender and the default "now" date, a fixed sentinel rather
//     than the clock), so funds codes such as CLF, BOV or USN are included and withdrawn
//     currencies such as DEM or FRF are not;
//   - minus the X-codes that are legal tender nowhere: XXX (no currency), XTS (testing),
//     precious metals (XAU, XAG, XPT, XPD), bond-market units (XBA..XBD), XDR, XSU and
//     XUA. ISO 4217 gives none of them a minor unit, so there is no exponent to use.
//     The real X-currencies (XAF, XCD, XOF, XPF) are tender and stay;
//   - minus CNH, which CLDR lists but which is a market convention, not an ISO 4217 code.
//
// The exponent is CLDR's standard (not cash) rounding scale, except where isoExponents
// corrects it. A correction for a code not in the table is an error, so none goes stale
// unnoticed.
func buildTable() ([]entry, []fix, error) {
	tender := make(map[string]bool)
	for it := currency.Query(currency.NonTender); it.Next(); {
		code := it.Unit().String()
		tender[code] = tender[code] || it.IsTender()
	}
	iso := isoExponents()
	var (
		table []entry
		fixes []fix
	)
	for code, isTender := range tender {
		if len(code) != 3 || code == "CNH" || (code[0] == 'X' && !isTender) {
			continue
		}
		u, err := currency.ParseISO(code)
		if err != nil || u.String() != code {
			continue
		}
		exp, _ := currency.Standard.Rounding(u)
		if want, ok := iso[code]; ok {
			fixes = append(fixes, fix{Code: code, CLDR: exp, ISO: want})
			exp = want
		}
		table = append(table, entry{Code: code, Exponent: exp})
	}
	slices.SortFunc(table, func(a, b entry) int { return strings.Compare(a.Code, b.Code) })
	slices.SortFunc(fixes, func(a, b fix) int { return strings.Compare(a.Code, b.Code) })
	if len(fixes) != len(iso) {
		var dead []string
		for code := range iso {
			if !slices.ContainsFunc(fixes, func(f fix) bool { return f.Code == code }) {
				dead = append(dead, code)
			}
		}
		slices.Sort(dead)
		return nil, nil, fmt.Errorf("ISO corrections for currencies not in the table: %s", strings.Join(dead, ", "))
	}
	return table, fixes, nil
}

// isoExponents returns the ISO 4217 minor unit for the currencies whose CLDR standard
// digits differ from it. CLDR (and so x/text) records the decimals used in practice:
// it says 0 for IDR, COP, PKR and others whose ISO minor unit is 2, and 0 for IQD
// whose ISO minor unit is 3. A ledger exchanging amounts with banks and payment
// networks needs the ISO value. Everything else comes from x/text unchanged.
func isoExponents() map[string]int {
	m := map[string]int{"IQD": 3}
	for _, code := range []string{
		"AFN", "ALL", "AMD", "COP", "GYD", "IDR", "IRR", "KPW", "LAK", "LBP",
		"MGA", "MMK", "MNT", "MRO", "MUR", "PKR", "RSD", "SLL", "SOS", "SYP",
		"TZS", "UZS", "YER",
	} {
		m[code] = 2
	}
	return m
}

// textVersion is the version of golang.org/x/text linked into this binary: the one go.mod
// selects, or its replacement.
func textVersion() (string, error) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "", errors.New("no build information; run with go run or go build in module mode")
	}
	for _, dep := range info.Deps {
		if dep.Path != textModule {
			continue
		}
		if r := dep.Replace; r != nil {
			return strings.TrimSpace(fmt.Sprintf("%s => %s %s", dep.Version, r.Path, r.Version)), nil
		}
		return dep.Version, nil
	}
	return "", fmt.Errorf("%s not found in the build information", textModule)
}

// render writes the Go source of currency_table.go, gofmt'ed.
func render(table []entry, fixes []fix, version, date string) ([]byte, error) {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("// Code generated by internal/currencygen; DO NOT EDIT.\n")
	p("//\n")
	p("// Source: %s %s, package currency (CLDR %s), generated %s.\n", textModule, version, currency.CLDRVersion, date)
	p("// Regenerate with `make currencies` and review the diff: it changes which currencies\n")
	p("// and exponents the state machine accepts.\n")
	p("//\n")
	p("// Included: every unit CLDR records as currently in use in some region, tender or not,\n")
	p("// except X-codes that are legal tender nowhere and CNH.\n")
	p("// Exponent: CLDR's standard digits, with these ISO 4217 minor-unit corrections (CLDR -> ISO):\n")
	line := "//"
	for i, f := range fixes {
		item := fmt.Sprintf(" %s %d->%d", f.Code, f.CLDR, f.ISO)
		if i < len(fixes)-1 {
			item += ","
		}
		if len(line)+len(item) > 90 {
			p("%s\n", line)
			line = "//"
		}
		line += item
	}
	p("%s.\n\n", line)
	p("package chronicle\n\n")
	p("// currencyTable is every currency LookupCurrency accepts, sorted by code for binary search.\n")
	p("// Only LookupCurrency and Currencies (which returns a copy) read it; nothing writes it.\n")
	p("var currencyTable = [...]Currency{\n")
	for _, e := range table {
		p("\t{Code: %q, Exponent: %d},\n", e.Code, e.Exponent)
	}
	p("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("formatting the output: %w", err)
	}
	return src, nil
}
