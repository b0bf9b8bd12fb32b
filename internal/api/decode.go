package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"
)

// decode reads a request body strictly: exactly one JSON object and
// nothing after it but white space, valid UTF-8, and every key spelt
// exactly as the field's JSON name, once. encoding/json alone accepts a
// trailing "}" or "]", matches "Force" to "force" (and Unicode folds such
// as "ſ" to "s"), and keeps the last of duplicate keys; a request that
// reaches a handler must mean one thing only. Every refusal is a 400
// naming the problem (413 past the body cap).
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Errorf(http.StatusRequestEntityTooLarge, CodeBadRequest, "request body larger than %d bytes", mbe.Limit)
		}
		return Errorf(http.StatusBadRequest, CodeBadRequest, "while reading the request body: %v", err)
	}
	if err := decodeStrict(body, v); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "%v", err)
	}
	return nil
}

// decodeStrict is decode on a body already read.
func decodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("request body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return errors.New("request body is not valid UTF-8")
	}
	if !json.Valid(body) {
		// Either not JSON at all, or one valid value with something after
		// it: say which.
		dec := json.NewDecoder(bytes.NewReader(body))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("request body is not valid JSON: %v", err)
		}
		return fmt.Errorf("request body has data after the JSON object (at byte %d)", dec.InputOffset())
	}
	if b := bytes.TrimSpace(body); b[0] != '{' {
		return errors.New("request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := checkKeys(dec, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("request body: key %q must be %s, not a JSON %s", te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("request body is not valid JSON for this endpoint: %v", err)
	}
	return nil
}

// checkKeys walks the next JSON value in dec beside the Go type t it will
// decode into, refusing duplicate keys in any object and, where t is a
// struct, keys that are not exactly one of its fields' JSON names. path
// names the value for the error ("secondary.token"). The body is known to
// be valid JSON, so dec's own errors cannot happen.
func checkKeys(dec *json.Decoder, t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("request body is not valid JSON: %v", err)
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]reflect.Type
		var elem reflect.Type
		switch {
		case t == nil:
		case t.Kind() == reflect.Struct:
			fields = jsonFields(t)
		case t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return fmt.Errorf("request body is not valid JSON: %v", err)
			}
			key := tok.(string)
			at := key
			if path != "" {
				at = path + "." + key
			}
			if seen[key] {
				return fmt.Errorf("request body has the duplicate key %q", at)
			}
			seen[key] = true
			next := elem
			if fields != nil {
				ft, ok := fields[key]
				if !ok {
					return unknownKey(at, key, fields)
				}
				next = ft
			}
			if err := checkKeys(dec, next, at); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkKeys(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

func unknownKey(at, key string, fields map[string]reflect.Type) error {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return fmt.Errorf("request body has the unknown key %q: keys are case-sensitive, write %q", at, name)
		}
	}
	return fmt.Errorf("request body has the unknown key %q", at)
}

// jsonFields maps the exact JSON names of struct t's fields to their
// types, as encoding/json names them (tag name, else the Go name;
// embedded structs without a tag promote their fields).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			for k, v := range jsonFields(ft) {
				if _, ok := out[k]; !ok {
					out[k] = v
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
