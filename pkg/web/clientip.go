package web

import (
	"log/slog"
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
)

const clientIPKey = "plenary.client_ip"

// ClientIP is the address of the client that sent the request, for rate
// limits: the peer's address, or — when the peer is a trusted proxy — the
// right-most address in X-Forwarded-For that is not a trusted proxy. The
// left-most entries are whatever the client wrote there, so they are never
// believed.
func ClientIP(c *fiber.Ctx) string {
	if ip, ok := c.Locals(clientIPKey).(string); ok {
		return ip
	}
	return c.IP()
}

func clientIP(trusted []netip.Prefix) fiber.Handler {
	isTrusted := func(a netip.Addr) bool {
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	return func(c *fiber.Ctx) error {
		peer, ok := netip.AddrFromSlice(c.Context().RemoteIP())
		client := peer.Unmap()
		if ok && isTrusted(client) {
			hops := strings.Split(c.Get(fiber.HeaderXForwardedFor), ",")
			for i := len(hops) - 1; i >= 0; i-- {
				a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
				if err != nil {
					break // a garbled hop: trust nothing further left
				}
				client = a.Unmap()
				if !isTrusted(client) {
					break
				}
			}
		}
		c.Locals(clientIPKey, client.String())
		return c.Next()
	}
}

// parsePrefixes reads addresses ("10.0.0.5") and ranges ("10.0.0.0/8");
// entries that are neither are logged and ignored.
func parsePrefixes(list []string, log *slog.Logger) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		log.Warn("TRUSTED_PROXIES: ignoring an entry that is neither an address nor a range", "entry", s)
	}
	return out
}
