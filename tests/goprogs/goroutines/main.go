// Test target for observer's goroutine dump: N goroutines parked on a channel receive in
// main.leakyWorker, one parked on a held sync.Mutex in main.lockedSection, one parked at the
// bottom of 41 frames of main.deepWait (a stack of ~25 KiB), and net/http/pprof
// on a random loopback port (printed as "listening 127.0.0.1:PORT") so a test can compare
// observer's dump with the runtime's own /debug/pprof/goroutine?debug=2.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"strconv"
	"sync"
)

var mu sync.Mutex

//go:noinline
func leakyWorker(ch chan int) {
	<-ch
}

//go:noinline
func lockedSection() {
	mu.Lock()
	mu.Unlock()
}

// deepWait recurses with big frames before parking, so its stack is deeper than one read.
//
//go:noinline
func deepWait(n int, ch chan int) int {
	var pad [512]byte
	pad[n%512] = byte(n)
	if n == 0 {
		return <-ch
	}
	return deepWait(n-1, ch) + int(pad[(n+1)%512])
}

func main() {
	n := 1000
	if len(os.Args) > 1 {
		if v, err := strconv.Atoi(os.Args[1]); err == nil {
			n = v
		}
	}
	ch := make(chan int)
	for i := 0; i < n; i++ {
		go leakyWorker(ch)
	}
	mu.Lock()
	go lockedSection()
	go deepWait(40, ch)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
