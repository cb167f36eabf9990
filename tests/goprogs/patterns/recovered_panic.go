// A request handler panics on bad input; a deferred recover() throws the panic away and the
// worker carries on as if nothing happened. observer must report a go_panic with recovered=true.
package main

import (
	"errors"
	"fmt"
	"os"
	"time"
)

func parseRecord(rec string) int {
	if rec == "" {
		panic(errors.New("empty record in parseRecord"))
	}
	return len(rec)
}

//go:noinline
func handleRecord(rec string) (n int) {
	defer func() {
		_ = recover() // swallowed: the bug this program demonstrates
	}()
	return parseRecord(rec)
}

func main() {
	time.Sleep(300 * time.Millisecond)
	total := 0
	for _, r := range []string{"a", "", "bc"} {
		total += handleRecord(r)
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Fprintln(os.Stderr, "processed", total)
}
