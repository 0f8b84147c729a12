package web

import (
	"errors"
	"io"
	"net"
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// Handler serves app as an http.Handler in this process, for a front that
// has already read the request (the local stack's one listener): no second
// HTTP hop over loopback, no reverse proxy. The app sees the front's client
// as its peer. A body over BodyLimit is answered as the app's own server
// answers it (413, problem+json).
//
// Fiber's adaptor.FiberApp does the same conversion but rebuilds the app's
// route tree on every request (it calls app.Handler each time), and keeps
// only the last value of a repeated request header.
func Handler(app *fiber.App) http.Handler {
	serve := app.Handler() // builds the route tree, once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(r.Method)
		req.SetRequestURI(r.URL.RequestURI())
		req.Header.SetHost(r.Host)
		for name, values := range r.Header {
			for _, v := range values {
				req.Header.Add(name, v)
			}
		}
		// Announced too big: refused unread. Otherwise read up to the limit.
		tooBig := r.ContentLength > BodyLimit
		if !tooBig {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, BodyLimit))
			var overLimit *http.MaxBytesError
			if tooBig = errors.As(err, &overLimit); err != nil && !tooBig {
				return // the client went away mid-body
			}
			req.SetBody(body)
		}
		peer, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr) // ip:port, no lookup

		var fctx fasthttp.RequestCtx
		fctx.Init(req, peer, nil)
		if tooBig {
			c := app.AcquireCtx(&fctx)
			_ = app.Config().ErrorHandler(c, fiber.ErrRequestEntityTooLarge)
			app.ReleaseCtx(c)
		} else {
			serve(&fctx)
		}
		for name, value := range fctx.Response.Header.All() {
			w.Header().Add(string(name), string(value))
		}
		w.WriteHeader(fctx.Response.StatusCode())
		_, _ = w.Write(fctx.Response.Body())
	})
}
