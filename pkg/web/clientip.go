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
			// Every X-Forwarded-For line, in order: a proxy may add its own
			// line after the one the client sent.
			var hops []string
			for _, line := range c.Request().Header.PeekAll(fiber.HeaderXForwardedFor) {
				hops = append(hops, strings.Split(string(line), ",")...)
			}
			for i := len(hops) - 1; i >= 0; i-- {
				a, ok := parseHop(hops[i])
				if !ok {
					break // a garbled hop: trust nothing further left
				}
				client = a
				if !isTrusted(client) {
					break
				}
			}
		}
		c.Locals(clientIPKey, client.String())
		return c.Next()
	}
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port ("203.0.113.9:4711", "[2001:db8::1]:4711") or in brackets.
func parseHop(h string) (netip.Addr, bool) {
	h = strings.TrimSpace(h)
	if ap, err := netip.ParseAddrPort(h); err == nil {
		return ap.Addr().Unmap(), true
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
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
