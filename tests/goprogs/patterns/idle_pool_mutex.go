// A service that is mostly idle, with one real mutex wait: eight pool workers wait for jobs in
// select (waking every 200 ms to check a timer), a listener waits in Accept (IO wait) and a
// dispatcher in a channel receive, for the whole run; a compactor holds the index mutex for
// 300 ms every second, and handleRequest waits behind it. observer's profiles must lead with
// the mutex wait in handleRequest, and keep the idle time (tens of seconds) apart.
package main

import (
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

var (
	indexMu sync.Mutex
	index   = map[int]int{}
	jobs    = make(chan int)
	never   = make(chan int)
)

//go:noinline
func poolWorker(id int) {
	for {
		select {
		case j := <-jobs:
			index[id] += j
		case <-time.After(200 * time.Millisecond):
		}
	}
}

//go:noinline
func acceptLoop(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

//go:noinline
func dispatcher() {
	for j := range never {
		jobs <- j
	}
}

//go:noinline
func compact() {
	indexMu.Lock()
	defer indexMu.Unlock()
	deadline := time.Now().Add(300 * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) { // rewriting the index, on CPU
		n++
	}
	index[-1] = n
}

//go:noinline
func handleRequest(k int) int {
	indexMu.Lock()
	defer indexMu.Unlock()
	return index[k]
}

func main() {
	secs := 4
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	for i := 0; i < 8; i++ {
		go poolWorker(i)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go acceptLoop(l)
	go dispatcher()
	go func() {
		for {
			time.Sleep(700 * time.Millisecond)
			compact()
		}
	}()
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(deadline) {
		handleRequest(1)
		time.Sleep(5 * time.Millisecond)
	}
}
