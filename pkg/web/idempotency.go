package web

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/gofiber/fiber/v2"
)

// IdempotencyHeader names the header a client sets to make a retry of a
// write a no-op.
const IdempotencyHeader = "Idempotency-Key"

// IdempotencyKey derives a request's idempotency key ("" without the
// header) from the Idempotency-Key header scoped to the path and the body,
// so two clients that happen to choose the same key (a counter, say) never
// have each other's request dropped as a duplicate.
func IdempotencyKey(c *fiber.Ctx) (string, error) {
	k := c.Get(IdempotencyHeader)
	if k == "" {
		return "", nil
	}
	if len(k) > 255 {
		return "", BadRequest("Idempotency-Key must be at most 255 characters")
	}
	h := sha256.New()
	h.Write([]byte(k))
	h.Write([]byte{0})
	h.Write([]byte(c.Path()))
	h.Write([]byte{0})
	h.Write(c.Body())
	return hex.EncodeToString(h.Sum(nil)), nil
}
