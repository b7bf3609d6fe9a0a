package dedupe

// SetPollHook has c tell f of each poll that returned records, and whether
// a batch was being settled meanwhile (a poll ahead).
func SetPollHook[Tx any](c *Consumer[Tx], f func(records int, ahead bool)) { c.polled = f }
