// Goroutines ping-ponging over unbuffered channels as fast as they can: hundreds of thousands of
// parks per second. The goroutine uprobes would slow it down badly, so observer must take them
// off (--go-max-parks) and say so.
package main

import (
	"os"
	"strconv"
	"time"
)

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
}
