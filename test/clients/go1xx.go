// go1xx METHOD URL: one request with Go's net/http client (PUT and POST
// send a body with "Expect: 100-continue"); prints "status length 1xx",
// where 1xx is the number of interim responses the client saw. Go fails
// a response after 5 of them ("too many 1xx informational responses").
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"time"
)

func main() {
	method, url := os.Args[1], os.Args[2]
	var body io.Reader
	if method != "GET" {
		body = bytes.NewReader(bytes.Repeat([]byte("x"), 4096))
	}
	interims := 0
	trace := &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			interims++
			return nil
		},
	}
	req, err := http.NewRequestWithContext(
		httptrace.WithClientTrace(context.Background(), trace),
		method, url, body)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if body != nil {
		req.Header.Set("Expect", "100-continue")
	}
	client := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second},
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(resp.StatusCode, len(data), interims)
}
