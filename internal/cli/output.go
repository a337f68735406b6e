package cli

import (
	"fmt"
	"io"
	"reflect"
	"text/tabwriter"
)

// listJSON is what a list verb prints with -o json: the shape the API answers
// a list with, so a script written against one reads the other. The CLI
// follows every page, so total is the number of items.
type listJSON struct {
	Items any `json:"items"`
	Total int `json:"total"`
}

// printList prints items (a slice) as a table, or with -o json as the API's
// list object: never a bare array, and never null for an empty list.
func (o *opts) printList(w io.Writer, items any, table func(*tabwriter.Writer)) error {
	v := reflect.ValueOf(items)
	if v.Kind() != reflect.Slice {
		return fmt.Errorf("printList: %T is not a slice", items)
	}
	if v.IsNil() {
		items = reflect.MakeSlice(v.Type(), 0, 0).Interface()
	}
	return o.print(w, listJSON{Items: items, Total: v.Len()}, table)
}

// plural counts n of a noun: "1 deployment", "2 deployments". Nouns with an
// irregular plural pass it as pl.
func plural(n int, noun string, pl ...string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	if len(pl) > 0 {
		return fmt.Sprintf("%d %s", n, pl[0])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
