package containers

import "time"

// eventually calls check every 200ms until it returns nil or timeout
// passes, and returns check's last error then.
func eventually(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
