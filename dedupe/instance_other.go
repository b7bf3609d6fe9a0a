//go:build !unix

package dedupe

// autoInstanceID has no lock files to pick a slot with here: membership is
// dynamic unless ConsumerConfig.InstanceID is set.
func autoInstanceID(string) (string, func()) { return "", func() {} }
