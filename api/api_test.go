package api

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

type schema struct {
	Ref        string             `json:"$ref"`
	Properties map[string]*schema `json:"properties"`
	Required   []string           `json:"required"`
	Items      *schema            `json:"items"`
}

type document struct {
	OpenAPI    string `json:"openapi"`
	Components struct {
		Schemas map[string]*schema `json:"schemas"`
	} `json:"components"`
}

// jsonFields lists a struct's JSON field names, embedded structs flattened, and which of
// them are always present (no omitempty).
func jsonFields(t reflect.Type) (names, always []string) {
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Tag.Get("json") == "" {
			n, a := jsonFields(f.Type)
			names, always = append(names, n...), append(always, a...)
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	sort.Strings(names)
	sort.Strings(always)
	return names, always
}

// TestSchemasMatchTypes holds the document's schemas to the Go types: the same field
// names, and for responses a field is required exactly when it is always served.
func TestSchemasMatchTypes(t *testing.T) {
	var doc document
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0.") {
		t.Errorf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	requests := map[string]any{"CreateAccount": CreateAccount{}, "Money": Money{}, "Transfer": Transfer{},
		"BatchItem": BatchItem{}, "Batch": Batch{}, "AccountLifecycle": AccountLifecycle{}, "JoinRequest": JoinRequest{}, "TokenCreate": TokenCreate{}}
	responses := map[string]any{"EventRef": EventRef{}, "CommandResult": CommandResult{}, "BatchResult": BatchResult{},
		"BatchResponse": BatchResponse{}, "Account": Account{}, "Accounts": Accounts{}, "Transaction": Transaction{},
		"Transactions": Transactions{}, "Balance": Balance{}, "Events": Events{}, "Health": Health{}, "Ready": Ready{},
		"JoinResponse": JoinResponse{}, "RemoveResponse": RemoveResponse{}, "ErrorBody": ErrorBody{},
		"Token": Token{}, "TokenCreated": TokenCreated{}, "Tokens": Tokens{},
		"Overview": Overview{}, "CurrencyHeld": CurrencyHeld{}}
	check := func(name string, v any, response bool) {
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Errorf("schema %s is missing", name)
			return
		}
		names, always := jsonFields(reflect.TypeOf(v))
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if !slices.Equal(props, names) {
			t.Errorf("schema %s has properties %v, type %T has fields %v", name, props, v, names)
		}
		req := slices.Sorted(slices.Values(s.Required))
		if response && !slices.Equal(req, always) {
			t.Errorf("schema %s requires %v, type %T always has %v", name, req, v, always)
		}
		for _, r := range req {
			if !slices.Contains(names, r) {
				t.Errorf("schema %s requires %s, which %T lacks", name, r, v)
			}
		}
	}
	for name, v := range requests {
		check(name, v, false)
	}
	for name, v := range responses {
		check(name, v, true)
	}
	// Every reference resolves.
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				name, found := strings.CutPrefix(ref, "#/components/schemas/")
				if !found {
					name, found = strings.CutPrefix(ref, "#/components/responses/")
					if found && name != "Error" {
						t.Errorf("unknown response reference %s", ref)
					}
				} else if doc.Components.Schemas[name] == nil {
					t.Errorf("reference %s names no schema", ref)
				}
			}
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	var raw any
	if err := json.Unmarshal(OpenAPI(), &raw); err != nil {
		t.Fatal(err)
	}
	walk(raw)
}
