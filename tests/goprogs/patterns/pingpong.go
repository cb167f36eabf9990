// Goroutines ping-ponging over unbuffered channels as fast as they can: hundreds of thousands of
// parks per second. The per-park goroutine uprobes would slow it down badly, so observer must
// take them off (--go-max-parks) and say so. With "panic" as second argument it then recovers a
// panic, as a busy service would on bad input: the panic probes stay on at any park rate, so
// it must still be reported. With "stall", one goroutine holds a sync.Mutex for 3 s in
// holdIndexLock while another waits for it in lookupIndex, during the ping-pong: with the park
// probes off, the stall must still be found (from memory snapshots).
package main

import (
	"errors"
	"os"
	"strconv"
	"sync"
	"time"
)

var indexLock sync.Mutex

//go:noinline
func holdIndexLock(held chan<- struct{}) {
	indexLock.Lock()
	held <- struct{}{}
	time.Sleep(3 * time.Second)
	indexLock.Unlock()
}

//go:noinline
func lookupIndex(done chan<- struct{}) {
	indexLock.Lock()
	indexLock.Unlock()
	done <- struct{}{}
}

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
	stallDone := make(chan struct{}, 1)
	if len(os.Args) > 2 && os.Args[2] == "stall" {
		go func() {
			time.Sleep(time.Second) // the guard fires in the first half second
			held := make(chan struct{})
			go holdIndexLock(held)
			<-held
			lookupIndex(stallDone)
		}()
	}
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
