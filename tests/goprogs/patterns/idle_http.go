// A healthy HTTP server under light load: idle connections, handlers that answer quickly, a
// worker pool parked on a channel waiting for jobs. observer must raise no alert.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	secs := 5
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	jobs := make(chan int)
	for i := 0; i < 8; i++ {
		go func() {
			for j := range jobs {
				_ = j * 2
			}
		}()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		jobs <- 1
		fmt.Fprintln(w, "ok")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go http.Serve(ln, mux)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := client.Get("http://" + ln.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}
}
