// busyhttp: a busy net/http service and its load generator, for observing a Go service at
// thousands of requests a second (each request parks and readies several goroutines).
//
//	busyhttp serve [-incidents]          serve on 127.0.0.1:0, print "listening ADDR"
//	busyhttp load -addr ADDR [-clients 32] [-seconds 8]
//	                                     keep-alive clients; prints "busyhttp: requests_per_sec=N"
//	busyhttp bench [-seconds 4] [-clients 32] [-incidents]
//	                                     serve, run `load` as a child process, print its line
//
// With -incidents, after 2 s of service: one request in 5,000 takes the index lock and holds
// it 300 ms in rebuildIndexSlowly (the other requests queue on it); one in 1,000 hits bad input
// that parseRecord panics on and handleRecord recovers; one in 500 starts a goroutine that
// waits forever on a channel nobody sends to (leakedWatcher): a slow, steady leak.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	indexLock sync.Mutex
	index     = map[int]int{}
	requests  atomic.Uint64
	incidents atomic.Bool
	started   = time.Now()
)

//go:noinline
func rebuildIndexSlowly() {
	indexLock.Lock()
	defer indexLock.Unlock()
	time.Sleep(300 * time.Millisecond)
	index[len(index)] = len(index)
}

//go:noinline
func lookupIndex(k int) int {
	indexLock.Lock()
	defer indexLock.Unlock()
	return index[k]
}

//go:noinline
func parseRecord(rec string) int {
	if rec == "" {
		panic(errors.New("empty record in parseRecord"))
	}
	return len(rec)
}

//go:noinline
func handleRecord(rec string) (n int) {
	defer func() {
		if recover() != nil {
			n = -1 // swallowed: the bug observer exists to catch
		}
	}()
	return parseRecord(rec)
}

var forever = make(chan struct{})

//go:noinline
func leakedWatcher() {
	<-forever
}

func handler(w http.ResponseWriter, r *http.Request) {
	n := requests.Add(1)
	if incidents.Load() && time.Since(started) > 2*time.Second {
		switch {
		case n%5000 == 0:
			rebuildIndexSlowly()
		case n%1000 == 0:
			handleRecord("")
		case n%500 == 0:
			go leakedWatcher()
		}
	}
	fmt.Fprintf(w, "%d\n", lookupIndex(int(n%64)))
}

func serve(withIncidents bool) (string, error) {
	incidents.Store(withIncidents)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go http.Serve(ln, http.HandlerFunc(handler))
	return ln.Addr().String(), nil
}

func load(addr string, clients int, seconds float64) float64 {
	var done atomic.Uint64
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				resp, err := client.Get("http://" + addr + "/")
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: busyhttp serve|load|bench [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "", "server address (load)")
	clients := fs.Int("clients", 32, "keep-alive clients")
	seconds := fs.Float64("seconds", 8, "how long to load")
	withIncidents := fs.Bool("incidents", false, "slow lock holds, recovered panics, a leak")
	fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "serve":
		a, err := serve(*withIncidents)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("listening %s\n", a)
		select {}
	case "load":
		fmt.Printf("busyhttp: requests_per_sec=%.0f\n", load(*addr, *clients, *seconds))
	case "bench":
		a, err := serve(*withIncidents)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cmd := exec.Command(os.Args[0], "load", "-addr", a,
			"-clients", fmt.Sprint(*clients), "-seconds", fmt.Sprint(*seconds))
		out, err := cmd.StdoutPipe()
		if err != nil || cmd.Start() != nil {
			fmt.Fprintln(os.Stderr, "busyhttp: cannot start the load generator")
			os.Exit(1)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "busyhttp:") {
				fmt.Println(line)
			}
		}
		if err := cmd.Wait(); err != nil {
			fmt.Fprintln(os.Stderr, "busyhttp: load generator:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: busyhttp serve|load|bench [flags]")
		os.Exit(2)
	}
}
