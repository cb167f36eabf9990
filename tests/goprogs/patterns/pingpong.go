// Goroutines ping-ponging over unbuffered channels as fast as they can: hundreds of thousands of
// parks per second. The per-park goroutine uprobes would slow it down badly, so observer must
// take them off (--go-max-parks) and say so. With "panic" as second argument it then recovers a
// panic, as a busy service would on bad input: the panic probes stay on at any park rate, so
// it must still be reported.
package main

import (
	"errors"
	"os"
	"strconv"
	"time"
)

//go:noinline
func parseAfterLoad(rec string) int {
	if rec == "" {
		panic(errors.New("bad input after load in parseAfterLoad"))
	}
	return len(rec)
}

//go:noinline
func handleAfterLoad(rec string) (n int) {
	defer func() {
		_ = recover() // swallowed, as the bug observer exists to catch
	}()
	return parseAfterLoad(rec)
}

func main() {
	secs := 3
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
	}()
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		ping <- i
		<-pong
	}
	if len(os.Args) > 2 && os.Args[2] == "panic" {
		handleAfterLoad("")
		time.Sleep(300 * time.Millisecond)
	}
}
