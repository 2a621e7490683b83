// Go net/http client for compat/run-compat.
//
// usage: goclient URL1 URL2
//
// One http.Client (one keep-alive Transport): the second request reuses the
// first one's connection if it is still good. Prints per request:
//   RESULT <i> <status> <body length> <md5 of body> <1xx seen>
//   ERROR <i> <error>
package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"runtime"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println(runtime.Version())
		return
	}
	// COMPAT_UPLOAD=PUT|POST (and COMPAT_UPLOAD_FILE): the first request
	// sends that file with "Expect: 100-continue" (DefaultTransport waits
	// up to its ExpectContinueTimeout, 1 s, for the 100)
	up := os.Getenv("COMPAT_UPLOAD")
	var upBody []byte
	if up != "" {
		upBody, _ = os.ReadFile(os.Getenv("COMPAT_UPLOAD_FILE"))
	}
	client := &http.Client{Timeout: 300 * time.Second}
	for i, url := range os.Args[1:] {
		n1xx := 0
		trace := &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				n1xx++
				return nil
			},
		}
		ctx := httptrace.WithClientTrace(context.Background(), trace)
		var req *http.Request
		if i == 0 && up != "" {
			req, _ = http.NewRequestWithContext(ctx, up, url, bytes.NewReader(upBody))
			req.Header.Set("Expect", "100-continue")
		} else {
			req, _ = http.NewRequestWithContext(ctx, "GET", url, nil)
		}
		r, err := client.Do(req)
		if err != nil {
			fmt.Printf("ERROR %d %s (after %d 1xx)\n", i+1, strings.ReplaceAll(err.Error(), "\n", " "), n1xx)
			continue
		}
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			fmt.Printf("ERROR %d reading body: %s\n", i+1, err)
			continue
		}
		fmt.Printf("RESULT %d %d %d %x %d\n", i+1, r.StatusCode, len(body), md5.Sum(body), n1xx)
	}
}
