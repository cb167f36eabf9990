// Work tagged with pprof labels, as a server tags each request (pprof.Do): a tagged goroutine
// stalls on a sync.Mutex another goroutine holds for 2.5 s, tagged goroutines leak parked in a
// select, and a tagged handler recovers a panic. observer's goroutine alerts and its goroutine
// profile must carry the labels {"request_id": "r-42", "route": "/cache"}. With "busy" as
// second argument a ping-pong parks goroutines fast enough that the park probes are
// duty-cycled: the stall is then followed from memory snapshots and must keep its labels.
//
// Like a real handler, each tagged piece of work goes on for a while after its wait or its
// recovered panic (finishRequest): observer reads the labels shortly after the event, and only
// if the goroutine still holds the labels it had at that moment.
package main

import (
	"context"
	"errors"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

var cacheLock sync.Mutex

//go:noinline
func holdCacheLock(held chan<- struct{}) {
	cacheLock.Lock()
	held <- struct{}{}
	time.Sleep(2500 * time.Millisecond)
	cacheLock.Unlock()
}

//go:noinline
func lookupTagged(done chan<- struct{}) {
	cacheLock.Lock()
	cacheLock.Unlock()
	done <- struct{}{}
}

// The rest of a request's work, still under its labels.
//
//go:noinline
func finishRequest() {
	time.Sleep(300 * time.Millisecond)
}

//go:noinline
func fetchTagged(results chan<- int) {
	never := make(chan int)
	select {
	case v := <-never: // the backend never answers, and nobody gives up on it
		results <- v
	}
}

//go:noinline
func handleTagged() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	results := make(chan int, 1)
	go fetchTagged(results)
	select {
	case <-results:
	case <-ctx.Done():
	}
}

//go:noinline
func parseTagged(rec string) int {
	if rec == "" {
		panic(errors.New("empty record in parseTagged"))
	}
	return len(rec)
}

//go:noinline
func handleTaggedPanic(rec string) (n int) {
	defer func() {
		_ = recover()
	}()
	return parseTagged(rec)
}

func main() {
	secs := 8
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	busy := len(os.Args) > 2 && os.Args[2] == "busy"
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	tags := pprof.Labels("request_id", "r-42", "route", "/cache")
	ctx := context.Background()
	if busy {
		ping, pong := make(chan int), make(chan int)
		go func() {
			for v := range ping {
				pong <- v + 1
			}
		}()
		go func() {
			for i := 0; time.Now().Before(deadline); i++ {
				ping <- i
				<-pong
			}
		}()
	}
	time.Sleep(time.Second)

	pprof.Do(ctx, tags, func(context.Context) {
		handleTaggedPanic("")
		finishRequest()
	})

	held := make(chan struct{})
	go holdCacheLock(held)
	<-held
	done := make(chan struct{}, 1)
	go pprof.Do(ctx, tags, func(context.Context) {
		lookupTagged(done)
		finishRequest()
	})

	for time.Now().Before(deadline) {
		pprof.Do(ctx, tags, func(context.Context) { handleTagged() })
		time.Sleep(40 * time.Millisecond)
	}
	<-done
}
